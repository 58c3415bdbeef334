#!/usr/bin/env bash
# Puts the programs that the tests need, and that the project does not run
# itself, where `make test` finds them, without changing the system beyond
# what it prints:
#
#   - g++ (apt-get install, when missing): builds the emulated GPU of
#     kernels/cuda's and collective/nccl's tests. A compiler; no service.
#   - libopenblas0 (apt-get install, when missing): a library, opened at run
#     time; no service. The tests pass on gonum's pure-Go fallback too, but
#     mac's ResNet parity runs 5x longer there (390 s on 2 cores against 80),
#     too near go test's timeout on a slower machine, and users run OpenBLAS.
#     oneDNN and libjpeg-turbo stay optional (make setup installs them): the
#     tests pass with and without each.
#   - prometheus and promtool (deploy/'s live scrape and config checks): the
#     Debian package is *downloaded* (apt-get download) and unpacked with
#     dpkg -x into $TOOLS (default .cache/test-tools), never installed, so
#     no prometheus.service is enabled or started and none of its 37
#     dependencies (node exporter, smartmontools, …) come along. The
#     binaries are static Go programs and need nothing else.
#
# Prints one line per thing it does; idempotent.
set -euo pipefail

TOOLS=${TOOLS:-.cache/test-tools}

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
updated=""
apt_update() {
	[ -n "$updated" ] && return 0
	echo "test-tools: apt-get update (package lists only)"
	if [ "$SUDO" = none ]; then
		echo "test-tools: need root or sudo for apt-get update" >&2
		return 1
	fi
	$SUDO apt-get update -q >/dev/null
	updated=1
}

if ! command -v g++ >/dev/null; then
	if [ "$SUDO" = none ]; then
		echo "test-tools: g++ is missing and there is no root or sudo to install it (apt-get install g++)" >&2
		exit 1
	fi
	apt_update
	echo "test-tools: installing g++ (apt-get install --no-install-recommends g++)"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends g++ >/dev/null
fi

if ! installed libopenblas0; then
	if [ "$SUDO" = none ]; then
		echo "test-tools: libopenblas0 is missing and there is no root or sudo to install it (apt-get install libopenblas0)" >&2
		exit 1
	fi
	apt_update
	echo "test-tools: installing libopenblas0 (apt-get install --no-install-recommends libopenblas0)"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends libopenblas0 >/dev/null
fi

if [ -x "$TOOLS/usr/bin/prometheus" ] && [ -x "$TOOLS/usr/bin/promtool" ]; then
	echo "test-tools: prometheus and promtool in $TOOLS/usr/bin"
	exit 0
fi
mkdir -p "$TOOLS/deb"
tools=$(cd "$TOOLS" && pwd)
echo "test-tools: downloading Debian's prometheus package (apt-get download; not installed, no service) into $TOOLS"
# apt-get download writes into the current directory and needs the package
# lists; it runs as any user (as root it warns that _apt cannot write here).
if ! (cd "$tools/deb" && apt-get download -q prometheus >/dev/null 2>&1); then
	apt_update
	(cd "$tools/deb" && apt-get download -q prometheus 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
fi
deb=$(ls -t "$tools"/deb/prometheus_*.deb 2>/dev/null | sed -n 1p)
if [ -z "$deb" ]; then
	echo "test-tools: could not download the prometheus package" >&2
	exit 1
fi
dpkg -x "$deb" "$tools"
rm -f "$tools"/deb/prometheus_*.deb
"$tools/usr/bin/prometheus" --version 2>&1 | sed -n 1p | sed 's/^/test-tools: /'
