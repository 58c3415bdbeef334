// Package deploy holds no code: its files deploy macdist (README.md lists
// them), and its tests keep them true to the program. They parse every
// manifest, cross-check the settings the files must agree on (ports, GPU
// and process counts, the Secret, the run directory, the flags, which must
// be macdist's own), and, when Debian's prometheus is installed, scrape a
// real two-process run with the scrape configuration and ask Prometheus
// every query of the Grafana dashboard.
package deploy
