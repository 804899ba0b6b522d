"""The continuous watch: performance every 15 minutes, the database hourly, incidents between them."""
