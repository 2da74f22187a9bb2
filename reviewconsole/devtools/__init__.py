"""Development only: synthetic images, demo data and benchmarks. Production code never imports this.

Installed as an app (for `load_demo` and `bench`) only when DEBUG, DEMO or TESTING is on.
"""
