"""Validation of deploy/: images, compose, Kubernetes manifests, observability."""
