"""The web layer: reviewer pages, the platform API, the law-enforcement portal and the sign-in pages."""
