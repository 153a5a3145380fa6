#!/usr/bin/env bash
# Starts the local PostgreSQL and RabbitMQ when they are down, then waits until both answer.
set -euo pipefail

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
for _ in $(seq 1 60); do
  pg_isready -h 127.0.0.1 -p 5432 -q && psql -h 127.0.0.1 -U postgres -Atc 'select 1' postgres >/dev/null 2>&1 && break
  sleep 1
done
psql -h 127.0.0.1 -U postgres -Atc 'select 1' postgres >/dev/null || { echo "PostgreSQL is not answering" >&2; exit 1; }

if ! rabbitmqctl -q status >/dev/null 2>&1; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached || true
fi
timeout 120 rabbitmqctl -q await_startup >/dev/null 2>&1 || true
for _ in $(seq 1 60); do
  rabbitmqctl -q status >/dev/null 2>&1 && break
  sleep 1
done
rabbitmqctl -q status >/dev/null 2>&1 || { echo "RabbitMQ is not answering" >&2; exit 1; }
echo "PostgreSQL and RabbitMQ are up"
