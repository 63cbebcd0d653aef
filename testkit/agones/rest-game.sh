#!/bin/sh
# An Agones game server that speaks the REST SDK with curl, as Agones documents it. It goes
# one step further each time the test drops a `go-N` file in its directory, and leaves what it
# saw in files there.
A="http://127.0.0.1:${AGONES_SDK_HTTP_PORT:?}"
echo "${AGONES_SDK_GRPC_PORT:?} $AGONES_SDK_HTTP_PORT" > agones-ports
# Told another instance's port, it tries to allocate that one (which must be refused).
if [ -n "$OTHER_AGONES_HTTP_PORT" ]; then
  curl -s -o other.json -w '%{http_code}' -X POST -d '{}' \
    "http://127.0.0.1:$OTHER_AGONES_HTTP_PORT/allocate" > other.code
fi
# call METHOD PATH BODY: the status code on stdout, the answer in last.json.
call() {
  curl -s -o last.json -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' -d "$3" "$A$2"
}
go() { while [ ! -e "go-$1" ]; do sleep 0.05; done; }
# beta NAME METHOD PATH BODY: a counters/lists call, its code in NAME.code, answer in NAME.json.
beta() { call "$2" "$3" "$4" > "$1.code"; cp last.json "$1.json"; }
# The SDK may open a moment after the game starts, as with Agones' sidecar.
n=0
until [ "$(call POST /health '{}')" = 200 ]; do
  n=$((n + 1)); [ $n -gt 200 ] && exit 3; sleep 0.05
done
curl -sN "$A/watch/gameserver" > watch.log &
# Ready only once the watch is open, so it sees every state from the first.
until [ -s watch.log ]; do sleep 0.05; done
[ "$(call POST /ready '{}')" = 200 ] || exit 4
go 1
# A counter bump before the label: once the label shows, the bump is in.
beta counter-early PATCH /v1beta1/counters/rooms '{"countDiff":1}'
[ "$(call PUT /metadata/label '{"key":"map","value":"dust"}')" = 200 ] || exit 5
[ "$(call PUT /metadata/annotation '{"key":"round","value":"1"}')" = 200 ] || exit 6
go 2
[ "$(call POST /health '{}')" = 200 ] || exit 7
[ "$(call POST /allocate '{}')" = 200 ] || exit 8
go 3
[ "$(call POST /reserve '{"seconds":"30"}')" = 200 ] || exit 9
go 4
# The manifest's counter `rooms` (1 of 10) and list `players` (["bot"], capacity 3).
beta counter-get GET /v1beta1/counters/rooms ''
beta counter-add PATCH /v1beta1/counters/rooms '{"countDiff":"2"}'
beta counter-over PATCH /v1beta1/counters/rooms '{"countDiff":20}'
beta counter-capacity PATCH /v1beta1/counters/rooms '{"capacity":"5"}'
beta counter-unknown GET /v1beta1/counters/nope ''
beta list-capacity PATCH /v1beta1/lists/players '{"capacity":"4"}'
beta list-add POST /v1beta1/lists/players:addValue '{"value":"p1"}'
beta list-again POST /v1beta1/lists/players:addValue '{"value":"p1"}'
beta list-remove POST /v1beta1/lists/players:removeValue '{"value":"bot"}'
beta list-get GET /v1beta1/lists/players ''
touch counts.done
call GET /gameserver > gameserver.code; cp last.json gameserver.json
go 5
# Shutdown stops the game: the stop signal comes to its whole process group while the answer
# is on its way, so that one curl ignores it, and the game exits once it has the answer.
trap 'exit 0' TERM
(trap '' TERM; call POST /shutdown '{}' > shutdown.code)
sleep 60 & wait
