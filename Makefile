# ngx_gateway: build, test and run the nginx gateway modules.
#
#   make               build build/ngx_http_gateway_module.so (installs deps)
#   make test          deps + build + unit tests + the prove suite (t/*.t)
#   make test-valgrind the same suite with nginx under valgrind memcheck
#   make run           the demo: gateway + Redis + demo services
#   make unit          only build the C unit tests (t/unit)
#   make fuzz          run the libFuzzer targets (t/fuzz), FUZZ_TIME s each
#   make install       install the .so, its load_module snippet and the
#                      state directory the way Debian's libnginx-mod-*
#                      packages do (DESTDIR=... for a staging directory)
#   make uninstall     remove what make install installed
#   make deb           build/libnginx-mod-http-gateway_*.deb (dh, dh_nginx)
#   make clean         remove build products
#
# Variables: T="t/03-redis.t ..." picks test files (default: all of t/),
# PROVE_FLAGS=-v for verbose TAP, SKIP_DEPS=1 skips scripts/deps.sh,
# EXTRA_CC_OPT adds compiler flags (re-runs configure when it changes);
# FUZZ_TIME=600 sets how long `make fuzz` runs each target (seconds);
# DESTDIR, MODULES_DIR, SNIPPET_DIR, ENABLED_DIR, STATE_DIR, NGINX_USER for
# make install (below), DEB_OUT for make deb.
#
# The module is built out of tree against Debian's nginx-dev, the recipe of
# dh_nginx (Debian::Debhelper::Buildsystem::nginx_mod): nginx's configure is
# run once into build/ with Debian's own configure flags (so the .so is
# binary compatible with /usr/sbin/nginx), and `make modules` of the
# generated Makefile rebuilds only what changed.  nginx's configure already
# compiles with -W -Wall -Wpointer-arith -Wno-unused-parameter -Werror (as
# long as CFLAGS is not set in the environment, hence `env -u CFLAGS`).

SHELL      := /bin/bash
ROOT       := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BUILD      := $(ROOT)/build
NGX_SRC    ?= /usr/share/nginx/src
MODULE     := $(BUILD)/ngx_http_gateway_module.so
STAMP      := $(BUILD)/.configured
ARGS_FILE  := $(BUILD)/.configure-args

EXTRA_CC_OPT ?=
PROVE       ?= prove
PROVE_FLAGS ?=
T           ?= -r t/

# Debian's flags, as dh_nginx computes them (from the module's directory);
# lazily expanded: only the module-building sub-make, which runs after
# scripts/deps.sh has installed dpkg-dev, evaluates them.
DEB_CFLAGS   = $(shell cd $(ROOT) && dpkg-buildflags --get CFLAGS)
DEB_CPPFLAGS = $(shell cd $(ROOT) && dpkg-buildflags --get CPPFLAGS)
DEB_LDFLAGS  = $(shell cd $(ROOT) && dpkg-buildflags --get LDFLAGS)

CC_OPT = $(DEB_CFLAGS) -fPIC $(DEB_CPPFLAGS) $(EXTRA_CC_OPT)
LD_OPT = $(DEB_LDFLAGS) -fPIC

# libFuzzer targets: Debian's clang with libFuzzer (libclang-rt-14-dev)
FUZZ_CC      ?= clang
FUZZ_TIME    ?= 600
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_CFLAGS  := -std=gnu99 -g -O1 -Wall -Wextra -Werror \
                -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
                -I$(ROOT)/src
FUZZ_JSON    := $(ROOT)/src/ngx_gateway_json.c $(ROOT)/src/ngx_gateway_text.c
FUZZ_RECORD  := $(FUZZ_JSON) $(ROOT)/src/ngx_gateway_record.c \
                $(ROOT)/src/ngx_http_gateway_health_range.c
FUZZ_TRACE   := $(FUZZ_JSON) $(ROOT)/src/ngx_gateway_traceparent.c \
                $(ROOT)/src/ngx_gateway_otlp.c
FUZZ_FEED    := $(FUZZ_JSON) $(ROOT)/src/ngx_gateway_feed.c \
                $(ROOT)/src/ngx_gateway_record.c \
                $(ROOT)/src/ngx_http_gateway_health_range.c
FUZZ_HEADERS := $(ROOT)/t/fuzz/fuzz_check.h $(ROOT)/t/fuzz/otlp_check.h \
                $(wildcard $(ROOT)/src/ngx_gateway_*.h) \
                $(ROOT)/src/ngx_http_gateway_health_range.h

# make install: the layout of Debian's libnginx-mod-* packages.  nginx.conf
# of Debian's nginx includes /etc/nginx/modules-enabled/*.conf, so the
# module is loaded at the next start or reload.  STATE_DIR is the directory
# for state_file=: the workers (NGINX_USER) must be able to create files in
# it, which /var/lib/nginx itself (root's) does not allow.
DESTDIR      ?=
MODULES_DIR  ?= /usr/lib/nginx/modules
SNIPPET_DIR  ?= /usr/share/nginx/modules-available
ENABLED_DIR  ?= /etc/nginx/modules-enabled
STATE_DIR    ?= /var/lib/nginx/gateway
NGINX_USER   ?= www-data
SNIPPET      := mod-http-gateway.conf

.PHONY: all build module deps deps-bench unit test test-valgrind run clean \
	distclean fuzz fuzz-build install uninstall deb FORCE

all: build

build: deps
	@$(MAKE) --no-print-directory -f $(ROOT)/Makefile module

PAGE := $(BUILD)/ngx_http_gateway_dashboard_page.h

module: $(STAMP) $(PAGE)
	@env -u CFLAGS -u CPPFLAGS -u LDFLAGS \
	    $(MAKE) --no-print-directory -f $(BUILD)/Makefile -C $(NGX_SRC) modules
	@test -f $(MODULE)

deps:
ifneq ($(SKIP_DEPS),1)
	@$(ROOT)/scripts/deps.sh
endif

deps-bench:
	@$(ROOT)/scripts/deps.sh bench

# The configure arguments are kept in a file that changes only when they
# change: configure re-runs when `config` or the flags change, not otherwise.
$(ARGS_FILE): FORCE
	@mkdir -p $(BUILD)
	@printf '%s\n' 'cc-opt: $(CC_OPT)' 'ld-opt: $(LD_OPT)' 'ngx-src: $(NGX_SRC)' \
	    > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi

$(STAMP): $(ROOT)/config $(ARGS_FILE)
	@echo "configure: nginx $(NGX_SRC) -> $(BUILD) (about 20 s, once)"
	@rm -f $(STAMP)
	@cd $(NGX_SRC) && . ./conf_flags && \
	    env -u CFLAGS -u CPPFLAGS -u LDFLAGS ./configure \
	    --with-cc-opt="$(CC_OPT)" \
	    --with-ld-opt="$(LD_OPT)" \
	    "$${NGX_CONF_FLAGS[@]}" \
	    --add-dynamic-module=$(ROOT) \
	    --builddir=$(BUILD) > $(BUILD)/configure.log 2>&1 \
	    || { tail -n 30 $(BUILD)/configure.log; \
	         echo "configure failed: see $(BUILD)/configure.log" >&2; exit 1; }
	@touch $@

# configure writes it too; this keeps it current when the page changes
$(PAGE): $(ROOT)/src/ngx_http_gateway_dashboard.html $(ROOT)/scripts/embed.sh \
         $(STAMP)
	@sh $(ROOT)/scripts/embed.sh $< $@

unit: deps
	@$(MAKE) --no-print-directory -C $(ROOT)/t/unit

test: build unit
	@cd $(ROOT) && $(PROVE) $(PROVE_FLAGS) $(T)

test-valgrind: build unit
	@cd $(ROOT) && GATEWAY_TEST_VALGRIND=1 $(PROVE) $(PROVE_FLAGS) $(T)

fuzz-build: $(FUZZ_BUILD)/fuzz_json $(FUZZ_BUILD)/fuzz_record \
            $(FUZZ_BUILD)/fuzz_trace $(FUZZ_BUILD)/fuzz_feed

$(FUZZ_BUILD)/fuzz_json: $(ROOT)/t/fuzz/fuzz_json.c $(FUZZ_JSON) $(FUZZ_HEADERS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(ROOT)/t/fuzz/fuzz_json.c $(FUZZ_JSON)

$(FUZZ_BUILD)/fuzz_record: $(ROOT)/t/fuzz/fuzz_record.c $(FUZZ_RECORD) \
                           $(FUZZ_HEADERS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(ROOT)/t/fuzz/fuzz_record.c $(FUZZ_RECORD)

$(FUZZ_BUILD)/fuzz_trace: $(ROOT)/t/fuzz/fuzz_trace.c $(FUZZ_TRACE) \
                          $(FUZZ_HEADERS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(ROOT)/t/fuzz/fuzz_trace.c $(FUZZ_TRACE)

$(FUZZ_BUILD)/fuzz_feed: $(ROOT)/t/fuzz/fuzz_feed.c $(FUZZ_FEED) \
                         $(FUZZ_HEADERS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(ROOT)/t/fuzz/fuzz_feed.c $(FUZZ_FEED)

# New inputs go to build/fuzz/corpus-NAME (the seeds in t/fuzz/corpus/NAME
# are only read); a crash leaves build/fuzz/crash-* and stops the run.
fuzz: deps
	@$(MAKE) --no-print-directory -f $(ROOT)/Makefile fuzz-build
	@set -e; for t in json record trace feed; do \
	    mkdir -p $(FUZZ_BUILD)/corpus-$$t; \
	    echo "fuzz_$$t: $(FUZZ_TIME) s"; \
	    $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_TIME) \
	        -dict=$(ROOT)/t/fuzz/$$t.dict -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_BUILD)/ \
	        $(FUZZ_BUILD)/corpus-$$t $(ROOT)/t/fuzz/corpus/$$t; \
	done

run: build
	@$(ROOT)/scripts/run.sh

install: build
	install -d $(DESTDIR)$(MODULES_DIR) $(DESTDIR)$(SNIPPET_DIR) \
	    $(DESTDIR)$(ENABLED_DIR)
	install -m 0644 $(MODULE) $(DESTDIR)$(MODULES_DIR)/
	sed 's|/usr/lib/nginx/modules/|$(MODULES_DIR)/|' \
	    $(ROOT)/debian/$(SNIPPET) > $(DESTDIR)$(SNIPPET_DIR)/$(SNIPPET)
	chmod 0644 $(DESTDIR)$(SNIPPET_DIR)/$(SNIPPET)
	ln -sfn $(SNIPPET_DIR)/$(SNIPPET) $(DESTDIR)$(ENABLED_DIR)/50-$(SNIPPET)
	install -d -m 0750 $(DESTDIR)$(STATE_DIR)
	@if [ "$$(id -u)" = 0 ] && id -u $(NGINX_USER) >/dev/null 2>&1; then \
	    echo "chown $(NGINX_USER): $(DESTDIR)$(STATE_DIR)"; \
	    chown $(NGINX_USER): $(DESTDIR)$(STATE_DIR); \
	else \
	    echo "make install: not root: run" \
	         "'chown $(NGINX_USER): $(DESTDIR)$(STATE_DIR)'" \
	         "so that the nginx workers can write state files there" >&2; \
	fi

# make deb: dpkg-buildpackage in a copy of the tree (it writes its results
# next to the source directory), the .deb then moved to DEB_OUT.
DEB_OUT ?= $(BUILD)
DEB_DIR := $(BUILD)/deb

deb: deps
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/src $(DEB_OUT)
	tar -C $(ROOT) --exclude=./build --exclude=./tmp --exclude=./.git \
	    --exclude=./t/unit/build -cf - . | tar -C $(DEB_DIR)/src -xf -
	cd $(DEB_DIR)/src && env -u CFLAGS -u CPPFLAGS -u LDFLAGS -u MAKEFLAGS \
	    -u MAKELEVEL dpkg-buildpackage -b -uc -us > $(DEB_DIR)/build.log 2>&1 \
	    || { tail -n 30 $(DEB_DIR)/build.log; \
	         echo "make deb failed: see $(DEB_DIR)/build.log" >&2; exit 1; }
	mv $(DEB_DIR)/libnginx-mod-http-gateway_*.deb $(DEB_OUT)/
	@ls $(DEB_OUT)/libnginx-mod-http-gateway_*.deb

uninstall:
	rm -f $(DESTDIR)$(ENABLED_DIR)/50-$(SNIPPET) \
	    $(DESTDIR)$(SNIPPET_DIR)/$(SNIPPET) \
	    $(DESTDIR)$(MODULES_DIR)/ngx_http_gateway_module.so
	rmdir $(DESTDIR)$(STATE_DIR) 2>/dev/null || true

clean:
	rm -rf $(BUILD)
	-$(MAKE) -C $(ROOT)/t/unit clean 2>/dev/null || rm -rf $(ROOT)/t/unit/build

distclean: clean
	rm -rf $(ROOT)/tmp

FORCE:
