"""Daily health checks of the running platform: the application, ECS, RDS, ElastiCache, business metrics and KPIs."""
