#!/bin/sh
# A game server in plain sh that talks to its spawner through the SDK's HTTP/JSON form with
# curl: what an engine without gRPC does with its own HTTP client. The spawner sets
# EXILE_SDK_HTTP_ADDR (loopback host:port) and EXILE_SDK_TOKEN (this instance's secret).
set -eu

if [ -z "${EXILE_SDK_HTTP_ADDR:-}" ] || [ -z "${EXILE_SDK_TOKEN:-}" ]; then
    echo "not started by an Exile spawner: no one to tell" >&2
    exit 0
fi

# sdk METHOD ROUTE [JSON-BODY]: one SDK call; prints the JSON answer, fails on an error status
# (the answer then holds {"error": "..."}).
sdk() {
    if [ $# -ge 3 ]; then
        curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $EXILE_SDK_TOKEN" \
            -d "$3" "http://$EXILE_SDK_HTTP_ADDR/v1/$2"
    else
        curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $EXILE_SDK_TOKEN" \
            "http://$EXILE_SDK_HTTP_ADDR/v1/$2"
    fi
}

# Bind the game's sockets first (the port is in EXILE_PORT), then:
sdk POST ready
sdk POST players '{"count":0,"max":16}'
sdk POST label '{"key":"engine","value":"sh"}'

# Health pings keep the instance from going Unhealthy; a failed ping is not fatal (the
# spawner may be restarting, and comes back on the same address).
while :; do
    sdk POST health >/dev/null || echo "SDK health ping failed" >&2
    sleep 1
done
