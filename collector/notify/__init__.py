"""Notifications of ticket events: signed JSON webhooks, SMTP mail and chat/push services by Apprise
URL (services.py), through a database outbox.

Ticket events are written by the rules in the ingest transaction. The notifier (a background job in
every collector) fans new events out to the configured targets as `notifications` rows — one per
event and target, unique, so several collectors create each once — then claims due rows with a
compare-and-set lease, delivers, and logs every attempt in `notification_attempts`. A failed attempt
is retried with exponential backoff; after `max_attempts` (or a refusal that retrying cannot fix,
such as HTTP 4xx or SMTP 5xx) the notification is dead-lettered (`state = dead`) with its last error.
"""
