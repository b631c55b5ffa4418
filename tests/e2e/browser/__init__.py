"""The browser scenarios in Chromium (Playwright) through the gateway."""
