#!/bin/sh
# Renders deploy/mosquitto/mosquitto.conf for the eclipse-mosquitto image: the same
# configuration as the local runner, with container paths. Password file and ACL are
# written into the shared volume by `cityfix services mqtt-config` (the mqtt-init service).
set -eu
sed -e 's#{port}#1883#' -e 's#{host}#0.0.0.0#' \
    -e 's#{data_dir}#/mosquitto/data#' -e 's#{passwd}#/cityfix-mqtt/passwd#' \
    -e 's#{acl}#/cityfix-mqtt/acl#' -e 's#{pid}#/tmp/mosquitto.pid#' \
    -e 's#^log_dest file .*#log_dest stdout#' -e 's#^user root#user mosquitto#' \
    /cityfix-deploy/mosquitto.conf > /tmp/mosquitto.conf
exec mosquitto -c /tmp/mosquitto.conf
