# qat build. Portable baseline x86-64 objects; SIMD kernels live in kernels/, in files whose name
# says their ISA (*_avx2.c, *_avx512.c, *_vnni512.c, *_avxvnni.c, *_vbmi.c, *_vnnivbmi.c) and are
# compiled for it, then
# chosen at run time by CPU detection (kernels/cpu.c), so one binary runs on any x86-64.
# Folders and what goes where: docs/architecture.md.
#
#   make          libqat.a and the CLI ./qat
#   make test     install missing packages, build and run the CUnit suite
#   make demo     install missing packages + dataset, train, evaluate, benchmark
#   make asan     the tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench    bench/ programs against the PyTorch peer
#   make faults   the fault harness's long form (tests/faults/; its short form runs in make test)
#   make fuzz     libFuzzer on every file parser (tests/fuzz/), FUZZ_SECONDS each

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
SAN     ?=
# The flags qat needs whatever CFLAGS the caller gives (make asan overrides CFLAGS and SAN).
QAT_CFLAGS = -std=gnu11 -march=x86-64 -mtune=generic -fopenmp -Wall -Wextra -Wno-unused-parameter \
             -Iinclude -Ibase -Iautograd -Ikernels -Ifakequant -Ilayers -Imodels -Ioptim -Idatasets -Itrain -Iexport -Iruntime -Iplot -Icli -Idist
ALL_CFLAGS = $(CFLAGS) $(SAN) $(QAT_CFLAGS)
LDLIBS  += -lopenblas -ldnnl -lpng -lz -lm -lprotobuf-c
ALL_LDFLAGS = $(LDFLAGS) $(SAN) -fopenmp

# Data-parallel runs (dist/, docs/distributed.md): on Open MPI when mpicc is found (make MPI=0
# builds without it even then); dist/dist_none.c, a one-process stub, otherwise. Only
# dist/dist_mpi.c includes mpi.h; the link takes libmpi. Either way `qat` runs without mpirun.
MPICC ?= $(shell command -v mpicc 2>/dev/null)
MPI   ?= $(if $(MPICC),1,0)
ifeq ($(MPI),1)
DIST_SRC   = dist/dist_mpi.c
MPI_CFLAGS = $(shell $(MPICC) --showme:compile)
LDLIBS    += $(shell $(MPICC) --showme:link)
else
DIST_SRC   = dist/dist_none.c
endif

ISA_AVX2    = -mavx2 -mfma
ISA_AVX512  = -mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq
ISA_VNNI512 = $(ISA_AVX512) -mavx512vnni
ISA_AVXVNNI = -mavx2 -mfma -mavxvnni
ISA_VBMI    = $(ISA_AVX512) -mavx512vbmi
ISA_VNNIVBMI = $(ISA_VNNI512) -mavx512vbmi

LIB_SRCS := $(wildcard base/*.c autograd/*.c autograd/ops/*.c kernels/*.c fakequant/*.c layers/*.c \
                       models/*.c optim/*.c datasets/*.c runtime/*.c export/*.c train/*.c plot/*.c) \
            $(DIST_SRC)
CLI_SRCS := $(wildcard cli/*.c)
# ONNX export (export/onnx_*.c) writes through protobuf-c: the C code of ONNX's own schema,
# generated at build time from the onnx.proto Debian's libonnx-dev ships (protoc-c handles its
# proto2 syntax). Only the export/onnx_*.c files include it.
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
ONNX_GEN    = $(BUILD)/gen/onnx/onnx.pb-c
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(ONNX_GEN).o
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/%.o)
# The deploy-only INT8 runtime: no training code, no libpng/CUnit (include/qat_rt.h).
RT_SRCS := base/error.c base/base.c base/container.c kernels/cpu.c $(wildcard kernels/int8*.c) \
           $(wildcard kernels/peak_*.c) $(wildcard runtime/*.c)
RT_OBJS := $(RT_SRCS:%.c=$(BUILD)/%.o)
RT_LDLIBS = -ldnnl -lz -lm
TEST_SRCS := $(wildcard tests/*.c)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
HDRS := $(wildcard include/*.h */*.h autograd/ops/*.h)

.PHONY: all test demo asan bench deps deps-data clean libqat.a libqat_rt.a install
all: qat

deps:
	@sh scripts/deps.sh
deps-data:
	@sh scripts/deps.sh --data

$(BUILD)/%_avx2.o: %_avx2.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISA_AVX2) -c $< -o $@
$(BUILD)/%_avx512.o: %_avx512.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISA_AVX512) -c $< -o $@
$(BUILD)/%_vnni512.o: %_vnni512.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISA_VNNI512) -c $< -o $@
$(BUILD)/%_avxvnni.o: %_avxvnni.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISA_AVXVNNI) -c $< -o $@
$(BUILD)/%_vbmi.o: %_vbmi.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISA_VBMI) -c $< -o $@
$(BUILD)/%_vnnivbmi.o: %_vnnivbmi.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISA_VNNIVBMI) -c $< -o $@
# The BatchNorm passes must round every multiply and add on its own, as the scalar reference
# does (kernels/bn_avx512.c): no FMA contraction there.
$(BUILD)/kernels/bn_avx512.o: ISA_AVX512 += -ffp-contract=off
$(BUILD)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(ONNX_GEN).c $(ONNX_GEN).h: $(ONNX_PROTO)
	@mkdir -p $(BUILD)/gen/onnx
	cp $(ONNX_PROTO) $(BUILD)/gen/onnx/onnx.proto
	cd $(BUILD)/gen && protoc-c --c_out=. onnx/onnx.proto
$(ONNX_GEN).o: $(ONNX_GEN).c $(ONNX_GEN).h
	$(CC) $(CFLAGS) $(SAN) -std=gnu11 -march=x86-64 -I$(BUILD)/gen -c $< -o $@
$(BUILD)/export/onnx_%.o: export/onnx_%.c $(HDRS) $(ONNX_GEN).h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(BUILD)/gen -c $< -o $@
# The import tests edit ONNX files through the same generated code.
$(BUILD)/tests/test_onnx_import.o: tests/test_onnx_import.c $(HDRS) $(ONNX_GEN).h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(BUILD)/gen -c $< -o $@
$(BUILD)/dist/dist_mpi.o: dist/dist_mpi.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(MPI_CFLAGS) -c $< -o $@

$(BUILD)/libqat.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^
libqat.a: $(BUILD)/libqat.a
	cp $< $@
$(BUILD)/libqat_rt.a: $(RT_OBJS)
	@rm -f $@
	ar rcs $@ $^
libqat_rt.a: $(BUILD)/libqat_rt.a
	cp $< $@

# The deploy example, built as a user would: include/qat_rt.h, libqat_rt.a and libpng only.
.PHONY: examples
examples: examples/classify
examples/classify: examples/classify.c include/qat_rt.h $(BUILD)/libqat_rt.a
	$(CC) $(CFLAGS) $(SAN) -std=gnu11 -Wall -Wextra -Iinclude -o $@ $< $(BUILD)/libqat_rt.a \
	  $(RT_LDLIBS) -lpng $(ALL_LDFLAGS)

qat: $(CLI_OBJS) $(BUILD)/libqat.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_qat: $(TEST_OBJS) $(BUILD)/libqat.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS) -lcunit

test: deps
	$(MAKE) $(BUILD)/test_qat qat $(BUILD)/test_dist $(FAULT_TOOLS) $(BUILD)/fuzz_smoke_onnx
	$(BUILD)/test_qat
	$(BUILD)/fuzz_smoke_onnx $(FUZZ_SMOKE_RUNS)
	sh tests/dist/test_dist.sh ./qat $(BUILD)/test_dist
	bash tests/faults/faults.sh short ./qat $(BUILD)

# The fault harness (tests/faults/faults.sh): its short form runs in make test, the long one here
# (FAULTS_N mutants per parser, FAULTS_KILLS kill -9s; QAT= an ASan build of qat, if at hand).
FAULT_TOOLS = $(BUILD)/faults/mutate $(BUILD)/faults/killer $(BUILD)/faults/mkdata
QAT ?= ./qat
.PHONY: faults
faults: deps
	$(MAKE) qat $(FAULT_TOOLS)
	bash tests/faults/faults.sh long $(QAT) $(BUILD)
$(BUILD)/faults/mutate: tests/faults/mutate.c tests/fuzz/container_crc.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lz
$(BUILD)/faults/killer: tests/faults/killer.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $<
$(BUILD)/faults/mkdata: $(BUILD)/tests/faults/mkdata.o $(BUILD)/libqat.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# The ONNX importer's libFuzzer target on its seeds and FUZZ_SMOKE_RUNS deterministic mutants,
# without libFuzzer (tests/fuzz/fuzz_smoke.c): a few seconds in every make test and make asan;
# make fuzz-import is the real fuzzing.
FUZZ_SMOKE_RUNS ?= 500000
$(BUILD)/fuzz_smoke_onnx: $(BUILD)/tests/fuzz/fuzz_smoke.o $(BUILD)/tests/fuzz/fuzz_onnx_import.o $(BUILD)/libqat.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# The 2-rank case (tests/dist/test_dist.sh: mpirun -np 2, skipped in a build without MPI).
$(BUILD)/test_dist: $(BUILD)/tests/dist/test_dist.o $(BUILD)/libqat.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# bench/host.c: the host block (CPU, ISA path, measured peaks, load) every bench table prints.
$(BUILD)/bench_train: $(BUILD)/bench/bench_train.o $(BUILD)/bench/host.o $(BUILD)/libqat.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# qat's logits on a test split, beside ONNX Runtime's on the exported model (bench/onnx_*.sh).
$(BUILD)/onnx_logits: $(BUILD)/bench/onnx_logits.o $(BUILD)/libqat.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench_int8: $(BUILD)/bench/bench_int8.o $(BUILD)/bench/host.o $(BUILD)/libqat_rt.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(RT_LDLIBS)

# The INT8 depthwise kernel alone on the depthwise shapes of MobileNetV2-1.0 and mbv3-tiny.
$(BUILD)/bench_dw: $(BUILD)/bench/bench_dw.o $(BUILD)/libqat_rt.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(RT_LDLIBS)

$(BUILD)/bench_host: $(BUILD)/bench/bench_host.o $(BUILD)/bench/host.o $(BUILD)/libqat_rt.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(RT_LDLIBS)

bench: deps-data
	$(MAKE) $(BUILD)/bench_train
	bench/compare.sh

# The main job: train mbv2-tiny on Fashion-MNIST in FP32, quantize it to INT8 within 0.5 points
# (PTQ, QAT only if PTQ falls short), verify the INT8 model on the runtime, plot the curves and
# benchmark FP32 against INT8. DEMO_EPOCHS=15 is the full recipe (93.1%); 8 keeps it short.
DEMO_DIR    ?= runs/demo
DEMO_EPOCHS ?= 8
demo: deps-data
	$(MAKE) qat
	@echo "== qat demo: mbv2-tiny on Fashion-MNIST, $(DEMO_EPOCHS) FP32 epochs (the full recipe is 15: make demo DEMO_EPOCHS=15)"
	./qat train --data fashion-mnist --epochs $(DEMO_EPOCHS) --out $(DEMO_DIR)/fp32
	./qat quantize --ckpt $(DEMO_DIR)/fp32/best.ckpt --data fashion-mnist --max-drop 0.5 \
	  -o $(DEMO_DIR)/mbv2-tiny.q8 || [ $$? = 3 ]
	./qat plot $(DEMO_DIR)/fp32 -o $(DEMO_DIR)/curves.png
	./qat bench --int8 $(DEMO_DIR)/mbv2-tiny.q8 --ckpt $(DEMO_DIR)/fp32/best.ckpt --batch 1,64 --iters 300 \
	  | grep -v '^  '
	@echo "== done: $(DEMO_DIR)/mbv2-tiny.q8 (INT8 model), $(DEMO_DIR)/curves.png; per-layer times: qat bench --int8 $(DEMO_DIR)/mbv2-tiny.q8"

asan: deps
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" build-asan/test_qat build-asan/fuzz_smoke_onnx
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/test_qat
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/fuzz_smoke_onnx 20000

# libFuzzer + ASan/UBSan on the ONNX importer (tests/fuzz/fuzz_onnx_import.c): the importer needs the
# whole library (it builds models), so it links the library `make fuzz` builds with clang, coverage
# and the sanitizers (FUZZ_LIB, the kernels without them); the harness writes its seeds
# (QAT_FUZZ_SEEDS) into the corpus and fuzzes FUZZ_SECONDS on one core.
.PHONY: fuzz-import
fuzz-import: fuzz-lib
	@mkdir -p $(FUZZ_DIR)/corpus-onnx_import
	clang $(FUZZ_CFLAGS) $(QAT_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) tests/fuzz/fuzz_onnx_import.c \
	  $(FUZZ_LIB) -o $(FUZZ_DIR)/fuzz_onnx_import $(FUZZ_LDLIBS)
	QAT_FUZZ_SEEDS=$(FUZZ_DIR)/corpus-onnx_import $(FUZZ_DIR)/fuzz_onnx_import -max_total_time=$(FUZZ_SECONDS) \
	  -print_final_stats=1 $(FUZZ_OPTS) -artifact_prefix=$(FUZZ_DIR)/onnx_import- $(FUZZ_DIR)/corpus-onnx_import

clean:
	rm -rf build build-asan build-fuzz qat libqat.a libqat_rt.a examples/classify

# make install PREFIX=... [DESTDIR=...]: the CLI, both libraries, the public headers and qat.pc
# (pkg-config for the deploy runtime: cc app.c $$(pkg-config --cflags --libs qat)).
PREFIX  ?= /usr/local
VERSION  = 0.3.0
.PHONY: install
install: qat $(BUILD)/libqat.a $(BUILD)/libqat_rt.a
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 qat $(DESTDIR)$(PREFIX)/bin/qat
	install -m 644 $(BUILD)/libqat.a $(BUILD)/libqat_rt.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/qat.h include/qat_rt.h include/qat_status.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' scripts/qat.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/qat.pc

# libFuzzer + ASan/UBSan on every file parser: the .q8 loader (tests/fuzz/fuzz_q8.c, built from
# only the sources it needs) and the training side's parsers (tests/fuzz/fuzz_{ckpt,idx,png,
# cifar,spec}.c), which link the whole library built once with clang and libFuzzer's coverage
# (build-fuzz/lib, MPI=0). Each target is seeded with valid files (fuzz_seeds.c, the presets)
# and fuzzed FUZZ_SECONDS, one after the other; FUZZ_TARGETS picks some.
FUZZ_SECONDS ?= 600
FUZZ_DIR     ?= build-fuzz
FUZZ_TARGETS ?= q8 ckpt idx png cifar spec
FUZZ_SRCS    = tests/fuzz/fuzz_q8.c runtime/q8_file.c runtime/q8_model.c runtime/q8_kinds.c \
               base/container.c base/error.c
FUZZ_CFLAGS  = -std=gnu11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Iinclude -Ibase -Iruntime \
               -Ikernels
FUZZ_SAN     = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB     = $(FUZZ_DIR)/lib/libqat.a
FUZZ_LDLIBS  = -lopenblas -ldnnl -lpng -lz -lm -lprotobuf-c -fopenmp
FUZZ_OPTS   ?= -rss_limit_mb=4096 -timeout=30
.PHONY: fuzz fuzz-build fuzz-lib
# The kernels are arithmetic the parsers never reach: built without sanitizers or coverage
# there, which keeps the ASan build of the library to minutes on a loaded machine.
ifeq ($(FUZZ_LIB_BUILD),1)
$(BUILD)/kernels/%.o: override SAN =
endif
fuzz-lib:
	@command -v clang >/dev/null || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq; $$SUDO apt-get install -y -qq clang libclang-rt-14-dev zlib1g-dev; }
	$(MAKE) BUILD=$(FUZZ_DIR)/lib CC=clang MPI=0 FUZZ_LIB_BUILD=1 CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" $(FUZZ_LIB)
fuzz-build: fuzz-lib
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) $(FUZZ_SRCS) -o $(FUZZ_DIR)/fuzz_q8 -lz -lm
	clang $(FUZZ_CFLAGS) $(FUZZ_SAN) -DQAT_FUZZ_SEEDGEN $(FUZZ_SRCS) -o $(FUZZ_DIR)/fuzz_q8_seed -lz -lm
	for t in ckpt idx png cifar spec; do \
	  clang $(FUZZ_CFLAGS) $(QAT_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) tests/fuzz/fuzz_$$t.c \
	    $(FUZZ_LIB) -o $(FUZZ_DIR)/fuzz_$$t $(FUZZ_LDLIBS) || exit 1; done
	clang $(FUZZ_CFLAGS) $(QAT_CFLAGS) $(FUZZ_SAN) tests/fuzz/fuzz_seeds.c $(FUZZ_LIB) \
	  -o $(FUZZ_DIR)/fuzz_seeds $(FUZZ_LDLIBS)
	$(FUZZ_DIR)/fuzz_q8_seed $(FUZZ_DIR)/corpus
	rm -rf $(FUZZ_DIR)/seeds && $(FUZZ_DIR)/fuzz_seeds $(FUZZ_DIR)/seeds
	mkdir -p $(FUZZ_DIR)/seeds/spec && cp layers/presets/*.spec $(FUZZ_DIR)/seeds/spec/
fuzz: fuzz-build
	for t in $(FUZZ_TARGETS); do \
	  if [ $$t = q8 ]; then c=$(FUZZ_DIR)/corpus; else c=$(FUZZ_DIR)/corpus-$$t; mkdir -p $$c; \
	    cp -n $(FUZZ_DIR)/seeds/$$t/* $$c/; fi; \
	  $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(FUZZ_OPTS) \
	    -artifact_prefix=$(FUZZ_DIR)/$$t- $$c || exit 1; done
