"""Staff notifications: the outbox in the store, routes and templates, the dispatcher."""
