# Helpers the benchmark scripts share; sourced, with $out set to the run's folder.

# Stops with a clear message unless every tool named is installed.
need() { # script tool...
  local script=$1 tool; shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$script: $tool is needed (apt-get install nginx-light wrk curl)" >&2; exit 1; }
  done
}

# Writes $out/NAME.conf and starts nginx with it: WORKERS processes on 127.0.0.1:PORT,
# SERVER inside its server block, HTTP (optional) beside it in the http block.
nginx_conf() { # name workers port server [http]
  mkdir -p "$out/tmp-$1"
  cat >"$out/$1.conf" <<CONF
worker_processes $2;
pid $out/$1.pid;
error_log $out/$1-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $out/tmp-$1; proxy_temp_path $out/tmp-$1;
  fastcgi_temp_path $out/tmp-$1; uwsgi_temp_path $out/tmp-$1; scgi_temp_path $out/tmp-$1;
  server { listen 127.0.0.1:$3 reuseport backlog=4096; $4 }
  ${5:-}
}
CONF
  nginx -c "$out/$1.conf" -p "$out"
}

# CPU time (user + system, in clock ticks) of the processes given, all their threads.
cpu() { # pid...
  local total=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}

# Waits (10 s at most) until URL answers with success.
wait_ready() { # url
  local _
  for _ in $(seq 50); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done
  echo "wait_ready: $1 did not answer" >&2
  return 1
}

# The waitroom cookie set by an answer to GET URL (its body written to FILE).
waitroom_cookie() { # url [file]
  curl -s -o "${2:-/dev/null}" -D - "$1" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: waitroom=\([^;]*\).*/\1/p' | head -1
}
