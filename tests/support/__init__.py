"""What the tests share, so that no test module imports another: builders of rows and orders, fakes and sandboxes of
the two vendors, served apps and processes, waiters, page helpers and the browser's helpers. Fixtures themselves are
defined once, in tests/conftest.py (tests/test_suite_shape.py keeps it so).

- `environment`: the test database and Redis (which backend, PostgreSQL admin, emptying), recorded payloads, running
  a coroutine from sync code, and the clock child processes inherit (`make test-shifted`).
- `factories`: rows made through the store (accounts, integrations, logins, orders), the `gateway` command in-process.
- `exact_contract`: what Exact accepts and requires on POST, per entity the gateway writes (test data, our words).
- `fake_exact`: one Exact division and the shop's order endpoint served by respx; a connected integration and queued
  orders for the booking job.
- `booking_sandbox`: the sandbox Exact in-process, seeded and tokened for booking the order corpus.
- `corpus`: the recorded shop orders and which configurations cannot book them.
- `servers`: apps over real HTTP in threads, both sandboxes served, gateway and worker processes, waiting for things.
- `pages`: the customer pages' forms (CSRF, the set-up wizard's steps).
- `browser`: Chromium's location and the screenshot-and-accessibility check of the browser tests.
- `clocks`: the awkward instants (month and year ends, summer time, 29 February, UTC's date not the Dutch one).
- `books_month`: a books-check month on both sandboxes; `smtp`: a local SMTP sink.
"""
