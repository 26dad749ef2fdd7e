#!/bin/sh
# Native weft events from sh: one JSON object per line on $WEFT_EVENT_FD.
emit() { [ -n "$WEFT_EVENT_FD" ] && printf '%s\n' "$1" >&"$WEFT_EVENT_FD"; }

emit '{"type":"plan","count":2}'
if [ "$(echo hello | tr a-z A-Z)" = HELLO ]; then
  emit '{"type":"assert","ok":true,"description":"tr upper-cases"}'
else
  emit '{"type":"assert","ok":false,"description":"tr upper-cases"}'
fi
start=$(date +%s%N)
sleep 0.01
end=$(date +%s%N)
emit "{\"type\":\"timing\",\"name\":\"sleep\",\"us\":$(( (end - start) / 1000 ))}"
emit '{"type":"note","message":"timing is informational"}'
emit '{"type":"assert","ok":true,"description":"slept","directive":"skip","reason":"not measured here"}'
