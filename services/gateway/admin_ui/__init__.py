"""The admin dashboard: server-rendered HTML pages, their session sign-in and static assets."""
