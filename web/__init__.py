"""The browser side: page views, templates, static assets and translations."""
