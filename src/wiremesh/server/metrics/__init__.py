"""Prometheus metrics of one replica: counters kept where things happen, gauges read at scrape."""
