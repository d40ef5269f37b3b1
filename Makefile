# Skein — developer targets. `make test` is the README's test command.
GO ?= go
PROTOC ?= protoc

.PHONY: test test-unit test-deploy test-deploy-secure test-e2e proto proto-check lint build install clean images

## test: everything CI runs (unit tier with -race, the multi-process tier, the container tier)
test:
	./scripts/test.sh

test-unit:
	$(GO) test -race -count=1 ./...

## test-deploy: the container tier alone (deploy/ checks, image, compose cluster);
## test-deploy-secure: the same, then the secure compose cluster too (TLS, ACLs, SCRAM)
test-deploy:
	./scripts/test-deploy.sh
test-deploy-secure:
	SKEIN_DEPLOY_SECURE=1 ./scripts/test-deploy.sh

## proto: regenerate the committed gRPC code
proto:
	./scripts/genproto.sh

## build: static binaries into ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

## images: the container image skein:latest (FROM scratch; IMAGE=name:tag to rename)
images:
	./scripts/images.sh $(IMAGE)

install:
	$(GO) install ./cmd/...

clean:
	rm -rf bin

## cluster: three brokers on this machine (scripts/cluster.sh); cluster-down stops them
.PHONY: cluster cluster-down cluster-wipe
cluster:
	./scripts/cluster.sh up
cluster-down:
	./scripts/cluster.sh down
cluster-wipe:
	./scripts/cluster.sh wipe

## chaos: the fault-injection suite's CI tier (root); chaos-long: the long tier;
## ENGINE=journal runs the brokers on that storage engine
## (10 runs x 5 min of mixed faults, then 10 x 5 min with none: about 2 hours);
## chaos-secure: the mix with TLS, mutual TLS between brokers, ACLs and SCRAM clients
.PHONY: chaos chaos-long chaos-secure
chaos:
	$(GO) run ./cmd/chaos -seed 1 -runs 4 -duration 40s -scenario process,partition,storage,mix $(if $(ENGINE),-storage-engine $(ENGINE))
	$(GO) run ./cmd/chaos -secure -seed 5 -runs 1 -duration 20s -scenario mix $(if $(ENGINE),-storage-engine $(ENGINE))
chaos-secure:
	$(GO) run ./cmd/chaos -secure -seed 1 -runs 2 -duration 40s -scenario mix $(if $(ENGINE),-storage-engine $(ENGINE))
chaos-long:
	$(GO) run ./cmd/chaos -seed 100 -runs 10 -duration 5m -scenario mix $(if $(ENGINE),-storage-engine $(ENGINE))
	$(GO) run ./cmd/chaos -seed 200 -runs 10 -duration 5m -scenario none $(if $(ENGINE),-storage-engine $(ENGINE))

## soak: one broker under normal load plus abusive clients in rotation, RSS and
## file handles sampled every second (soak-out/soak.csv, soak.png, summary.txt)
.PHONY: soak
DURATION ?= 30m
soak:
	$(GO) run ./scripts/soak -duration $(DURATION) -out soak-out
