#!/bin/sh
# Build Mosquitto's password file (hashed, PBKDF2-SHA512) from secrets, on every start:
#   /run/secrets/mqtt-devices.txt   "<device-id>:<password>" per line (secrets/, not committed)
#   IOC_MQTT_PASSWORD (the bridge), MQTT_HEALTH_PASSWORD   from .env (not committed)
# Device ids may not contain ':'; empty lines and lines starting with '#' are skipped.
# Plain-text passwords exist only in this container's memory and a private temporary file.
set -eu
: "${IOC_MQTT_PASSWORD:?IOC_MQTT_PASSWORD (the bridge password) is not set}"
: "${MQTT_HEALTH_PASSWORD:?MQTT_HEALTH_PASSWORD is not set}"
umask 077
plain=$(mktemp)
trap 'rm -f "$plain"' EXIT
grep -v -e '^[[:space:]]*$' -e '^[[:space:]]*#' /run/secrets/mqtt-devices.txt > "$plain" || true
printf 'iocstream-bridge:%s\nhealth:%s\n' "$IOC_MQTT_PASSWORD" "$MQTT_HEALTH_PASSWORD" >> "$plain"
mosquitto_passwd -U "$plain"
install -m 0640 "$plain" /mosquitto/auth/passwd.new
mv /mosquitto/auth/passwd.new /mosquitto/auth/passwd
echo "mosquitto password file written: $(wc -l < /mosquitto/auth/passwd) accounts"
