# Sesame. `make run` runs the daemon on the shipped default config;
# `make check` installs the test dependencies (Debian) and runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/sesame-knock/sesame/internal/version.Version=$(VERSION)
export CGO_ENABLED = 0

.PHONY: build run deps test check vet fuzz clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

# Runs sesamed in the foreground on packaging/sesame.conf (its one door only
# logs OPEN SESAME), with its state under /var/lib/sesame. Ctrl-C stops it.
run: build
	./bin/sesamed -c packaging/sesame.conf

# What the tests need from Debian: the reference knockd and knock client,
# the firewalls the native backends drive, and iproute2 for namespaces.
deps:
	apt-get install -y --no-install-recommends iptables ipset iproute2 nftables knockd systemd util-linux

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo 'gofmt needed'; exit 1)

test:
	$(GO) test -count=1 -timeout 30m ./...

check: deps vet test

clean:
	rm -rf bin dist
