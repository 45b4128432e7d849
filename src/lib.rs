//! lgtm-operator: runs Grafana Mimir, Loki and Tempo as a coordinator and pools of workers.
