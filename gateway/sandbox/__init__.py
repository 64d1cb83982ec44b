"""The sandbox: a fake Mijnwebwinkel and a fake Exact Online as Starlette apps, faithful to the real APIs, with fault
switches. The demo serves them over HTTP; tests reach them over HTTP or ASGITransport, like the real services."""
