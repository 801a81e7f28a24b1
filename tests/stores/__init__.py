"""Tests of the durable state stores and of choosing a store from a URL."""
