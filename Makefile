# Loopline developer entry points (GNU make). Idempotent: steps that download or install
# leave a stamp under .stamps/ and rerun only when their inputs change.
#
#   make setup   venv + jars + Debian packages      make test   setup, then pytest
#   make lint    ruff + mypy                        make demo   setup, then the closed-loop demo
#   make clean   stop local services, drop state    make distclean   also .venv and .jars

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
JARS := .jars
MVN ?= mvn
MVN_FLAGS ?= -q -B -Dstyle.color=never
PYTEST_ARGS ?=
KAFKA_POM := infra/jvm/kafka-broker/pom.xml
FLINK_POM := infra/jvm/flink-connectors/pom.xml
# The feedback job's JVM operators (jobs/feedback/jvm), compiled against the wheel's Flink jars
# and the Kafka connector (for its sink; the job ships the connector jar beside its own), and
# bundled with the libraries its pom names (Avro, kafka-clients) into one job jar.
FEEDBACK_POM := jobs/feedback/jvm/pom.xml
FEEDBACK_SRC := $(shell find jobs/feedback/jvm -name '*.java')
FEEDBACK_JAR := loopline-feedback-jvm.jar
# Provided by Flink, or native libraries a child class loader must not load a second time.
FEEDBACK_UNBUNDLED := slf4j-api snappy-java zstd-jni
# Flink's Prometheus reporter bound to loopback (infra/metrics.py): our factory plus the classes
# of the reporter plugin shipped in the same PyFlink wheel (so it matches the runtime), one jar.
METRICS_DIR := infra/jvm/flink-metrics-loopback
METRICS_SRC := $(shell find $(METRICS_DIR) -name '*.java')
METRICS_JAR := loopline-flink-metrics-prometheus.jar
# Python packages type-checked by `make lint`: those that exist (have an __init__.py).
PACKAGES := $(patsubst %/__init__.py,%,$(wildcard $(addsuffix /__init__.py,\
	loopline schemas jobs feature_repo models attribution simulator bench infra cli demo)))

.PHONY: help setup venv jars apt test lint demo smoke clean distclean

help:
	@echo "make setup | venv | jars | apt | test | lint | demo | clean | distclean"
	@echo "  PYTEST_ARGS='-m \"not integration\"' make test   # unit tests only (venv only)"

# apt first: it may install the java and mvn the other steps use.
setup: apt venv jars

venv: $(STAMPS)/venv
jars: $(STAMPS)/jars

$(STAMPS):
	@mkdir -p $@

$(STAMPS)/venv: pyproject.toml constraints.txt | $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

# Resolved into a scratch dir and swapped in, so a dependency dropped from a pom does not
# linger (two versions on a wildcard classpath) and running services never see a half copy.
$(STAMPS)/jars: $(KAFKA_POM) $(FLINK_POM) $(FEEDBACK_POM) $(FEEDBACK_SRC) $(METRICS_SRC) $(STAMPS)/venv | $(STAMPS) apt
	@command -v $(MVN) >/dev/null || { echo "make jars: '$(MVN)' not found; run 'make apt' as root or install Maven" >&2; exit 1; }
	rm -rf $(JARS)/.new
	$(MVN) $(MVN_FLAGS) -f $(KAFKA_POM) dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/$(JARS)/.new/kafka -DincludeScope=runtime
	$(MVN) $(MVN_FLAGS) -f $(FLINK_POM) dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/$(JARS)/.new/flink -DexcludeTransitive=true
	$(MVN) $(MVN_FLAGS) -f $(FEEDBACK_POM) dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/$(JARS)/.new/feedback-deps -DincludeScope=runtime
	pyflink=$$($(BIN)/python -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))'); \
	javac --release 17 -nowarn -d $(JARS)/.new/classes \
		-cp "$$pyflink/lib/*:$$(ls $$pyflink/opt/flink-python-*.jar):$(JARS)/.new/feedback-deps/*:$(JARS)/.new/flink/*" $(FEEDBACK_SRC)
	cd $(JARS)/.new/classes && for dep in ../feedback-deps/*.jar; do \
		name=$$(basename $$dep); skip=; \
		for u in $(FEEDBACK_UNBUNDLED); do case "$$name" in $$u-*) skip=1;; esac; done; \
		if [ -z "$$skip" ]; then jar xf "$$dep"; fi; \
	done && rm -rf META-INF/*.SF META-INF/*.RSA META-INF/*.DSA META-INF/versions/*/module-info.class module-info.class
	mkdir -p $(JARS)/.new/jobs
	jar cf $(JARS)/.new/jobs/$(FEEDBACK_JAR) -C $(JARS)/.new/classes .
	rm -rf $(JARS)/.new/classes $(JARS)/.new/feedback-deps
	rm -rf $(JARS)/patches  # the keyed-timer patch jar of the Python-operator job, gone
	pyflink=$$($(BIN)/python -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))'); \
	reporter=$$(ls $$pyflink/plugins/metrics-prometheus/flink-metrics-prometheus-*.jar); \
	mkdir -p $(JARS)/.new/metrics-classes $(JARS)/.new/metrics; \
	(cd $(JARS)/.new/metrics-classes && jar xf "$$reporter" io org); \
	javac --release 11 -nowarn -d $(JARS)/.new/metrics-classes \
		-cp "$$pyflink/lib/*:$$reporter" $(METRICS_SRC)
	cp -r $(METRICS_DIR)/src/main/resources/META-INF $(JARS)/.new/metrics-classes/
	jar cf $(JARS)/.new/metrics/$(METRICS_JAR) -C $(JARS)/.new/metrics-classes .
	rm -rf $(JARS)/.new/metrics-classes
	for group in kafka flink jobs metrics; do \
		rm -rf $(JARS)/$$group.old; \
		if [ -d $(JARS)/$$group ]; then mv $(JARS)/$$group $(JARS)/$$group.old; fi; \
		mv $(JARS)/.new/$$group $(JARS)/$$group; \
		rm -rf $(JARS)/$$group.old; \
	done
	rmdir $(JARS)/.new
	@touch $@

# No stamp: checking is cheaper than a stale stamp after someone removes a package.
apt:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v javac >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	command -v $(MVN) >/dev/null || missing="$$missing maven"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "make apt: not root, skipping; install these Debian packages yourself:$$missing" >&2; \
		exit 0; \
	fi; \
	echo "make apt: installing$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq; \
	apt-get install -y -qq --no-install-recommends $$missing >/dev/null

# Unit tests (PYTEST_ARGS='-m "not integration"') need only the venv: no Maven, javac or
# Debian packages. Anything that may run integration tests gets the whole setup.
UNIT_ONLY := $(findstring not integration,$(PYTEST_ARGS))
test: $(if $(UNIT_ONLY),venv,setup)
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then \
		echo "make test: pytest collected no tests (exit 5); a test run must run tests" >&2; \
	fi; \
	exit $$rc

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy $(PACKAGES)

# The closed loop end to end (docs/demo.md): starts the local Kafka broker if none answers,
# runs the feedback job in the Flink mini-cluster with SQLite Feast, prints the summary.
# DEMO_ARGS passes flags, e.g. DEMO_ARGS='--users 1000 --days 6' or '--scenario exploitation'.
DEMO_ARGS ?=
demo: setup
	$(BIN)/loopline demo $(DEMO_ARGS)

# The stack smoke check: local Kafka up, a few events through a Flink job and back.
smoke: setup
	$(BIN)/loopline infra up kafka
	$(BIN)/python -m infra.smoke

clean:
	@if [ -x $(BIN)/loopline ]; then $(BIN)/loopline infra down || true; fi
	rm -rf $(STAMPS) .loopline .mypy_cache .ruff_cache .pytest_cache build dist
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(JARS)
