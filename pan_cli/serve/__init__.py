"""`pan serve`: the web page and its API."""
