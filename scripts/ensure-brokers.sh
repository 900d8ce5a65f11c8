#!/usr/bin/env bash
# Install (as root, from Debian) and start what the tests need when it is missing:
# redis-server, rabbitmq-server with its management plugin, jq, man and groff (the
# man pages are checked at 80 columns), zsh, tmux (bash completion is tested in a real
# shell), npm, curl and openssl (the TLS tests make a throwaway certificate), postgresql
# (cev-cam's PostgreSQL history: tests connect as postgres over TCP, trust); for the
# contrib/ tests, the tools munin-run (munin-node), promtool (prometheus) and
# systemd-analyze (systemd), without their recommends (no exporters or plug-in
# collections); their daemons are not used.
# Idempotent: on a machine that has it all running, it only checks.
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
command -v jq >/dev/null || missing+=(jq)
command -v man >/dev/null || missing+=(man-db)
command -v groff >/dev/null || missing+=(groff-base)
command -v tmux >/dev/null || missing+=(tmux)
command -v zsh >/dev/null || missing+=(zsh)
command -v npm >/dev/null || missing+=(npm)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
tools=()
command -v munin-run >/dev/null || tools+=(munin-node)
command -v promtool >/dev/null || tools+=(prometheus)
command -v systemd-analyze >/dev/null || tools+=(systemd)

apt_install() {  # apt-get install "$@" (options, then packages), quietly
  echo "ensure-brokers: apt-get install $*" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
[ ${#tools[@]} -eq 0 ] || apt_install --no-install-recommends "${tools[@]}"

# The shared Redis on 6379 is left alone when it runs (tests start private ones).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "ensure-brokers: starting redis-server on 6379" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

# The shared PostgreSQL on 5432 is left alone when it runs (tests create private databases).
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "ensure-brokers: starting postgresql on 5432" >&2
  cluster=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$cluster/main/pg_hba.conf
  grep -q '^host all postgres 127.0.0.1/32 trust' "$hba" ||
    sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"  # the tests' user, local TCP only
  pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
fi

if ! rabbitmqctl -q status >/dev/null 2>&1; then
  echo "ensure-brokers: starting rabbitmq-server" >&2
  rabbitmq-server -detached
fi
timeout 120 rabbitmqctl -q await_startup >/dev/null

if ! rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1; then
  echo "ensure-brokers: enabling rabbitmq_management" >&2
  rabbitmq-plugins -q enable rabbitmq_management >/dev/null
fi
for _ in $(seq 1 120); do
  curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "ensure-brokers: the RabbitMQ management API did not come up on 127.0.0.1:15672" >&2
exit 1
