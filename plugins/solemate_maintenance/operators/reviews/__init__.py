"""The weekly and monthly reviews: database maintenance, certificates, image vulnerabilities, capacity,
the security audit, cost, performance and the stakeholder summary."""
