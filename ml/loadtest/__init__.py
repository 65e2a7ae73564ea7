"""Load tests of the served models with Locust (`mlplat loadtest`): request mix, headless run, report."""
