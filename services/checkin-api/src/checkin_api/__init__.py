"""The check-in API: the system of record for guest check-ins.

Every write changes a guest check-in, takes the org's next event ``seq`` and stores
the event in the outbox in one PostgreSQL transaction; the outbox relay publishes the
events to RabbitMQ in order, once the broker confirms them.
"""
