"""Clusters: the Redis backplane, node-to-node message schema, and polling forwarding."""
