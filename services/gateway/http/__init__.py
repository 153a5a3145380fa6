"""HTTP plumbing shared by every way in: authentication, errors, middleware, parameters, limits."""
