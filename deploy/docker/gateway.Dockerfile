# syntax=docker/dockerfile:1.7
# Image of the gateway: nginx serving the browser client (clients/web) and proxying
# the three services, long-polls routed to the fanout shard set that owns the org.
# Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t guest-checkin/gateway .
# The config and the routing script come from deploy/k8s/gateway/ (Kubernetes mounts
# the same files from a ConfigMap over these). The unprivileged nginx image runs as
# uid 101 on port 8080 and ships the njs module the routing needs.

ARG NGINX_IMAGE=nginxinc/nginx-unprivileged:1.27-alpine

FROM ${NGINX_IMAGE}
COPY clients/web /usr/share/nginx/html
COPY deploy/k8s/gateway/nginx.conf /etc/nginx/nginx.conf
COPY deploy/k8s/gateway/shard-route.js /etc/nginx/njs/shard-route.js
USER 101
EXPOSE 8080
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/gateway/healthz"]
