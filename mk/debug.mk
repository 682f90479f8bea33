# Debug info and source text for the guest's Linux 6.1 kernel (issue 13).
#
#   make debug-vmlinux   /var/cache/knockout/debug/<release>/vmlinux from Debian's
#                        linux-image-<release>-dbg (only the vmlinux is kept)
#   make kernel-source   Debian's linux-source-6.1 of the same version, only the
#                        directories source lines of the core kernel name, under
#                        /var/cache/knockout/src/linux-source-6.1/ (.release says for which)
#
# <release> is the newest installed /boot/vmlinuz-6.1.* (the ABI number moves with
# security updates: it is found at run time, never written here). Both steps are
# idempotent: a present, complete result is kept. knockout.dwarf.debug_vmlinux() and
# kernel_source_dir() find them. KNOCKOUT_DEBUG_CACHE moves the cache root.

KNOCKOUT_DEBUG_CACHE ?= /var/cache/knockout
DEBUG_SERIES := 6.1
# what of the source tree is unpacked: what the core kernel's line tables name
DEBUG_SOURCE_DIRS := mm include kernel lib fs block arch/x86/include arch/x86/kernel \
	arch/x86/mm arch/x86/lib arch/arm64/include

.PHONY: debug-vmlinux kernel-source
SETUP_TARGETS += debug-vmlinux kernel-source

# The release of the newest installed 6.1 kernel image; fails when there is none.
define debug_release
release=$$(ls /boot/vmlinuz-$(DEBUG_SERIES).* 2>/dev/null | sed 's|^/boot/vmlinuz-||' \
	| sort -V | tail -n 1); \
if [ -z "$$release" ]; then \
	echo "mk/debug.mk: no /boot/vmlinuz-$(DEBUG_SERIES).* installed; install linux-image-amd64" >&2; \
	exit 1; \
fi
endef

debug-vmlinux: $(APT_STAMP)
	@set -euo pipefail; $(debug_release); \
	dest=$(KNOCKOUT_DEBUG_CACHE)/debug/$$release; \
	if [ -f "$$dest/vmlinux" ] && [ ! -L "$$dest/vmlinux" ]; then exit 0; fi; \
	echo "mk/debug.mk: fetching linux-image-$$release-dbg (~820 MiB; only its vmlinux is kept)"; \
	mkdir -p $(KNOCKOUT_DEBUG_CACHE)/debug; \
	tmp=$$(mktemp -d "$(KNOCKOUT_DEBUG_CACHE)/debug/fetch.XXXXXX"); \
	trap 'rm -rf "$$tmp"' EXIT; \
	version=$$(dpkg-query -W -f='$${Version}' linux-image-$$release); \
	( cd "$$tmp" && apt-get download -q "linux-image-$$release-dbg=$$version" ) || { \
		echo "mk/debug.mk: apt-get download linux-image-$$release-dbg=$$version failed;" \
			"run apt-get update, or upgrade the kernel (apt-get install linux-image-amd64)" >&2; \
		exit 1; }; \
	dpkg-deb --fsys-tarfile "$$tmp"/linux-image-$$release-dbg_*.deb \
		| tar -x -C "$$tmp" "./usr/lib/debug/boot/vmlinux-$$release"; \
	rm -f "$$tmp"/*.deb; \
	mkdir -p "$$dest"; \
	mv "$$tmp/usr/lib/debug/boot/vmlinux-$$release" "$$dest/vmlinux.tmp"; \
	mv "$$dest/vmlinux.tmp" "$$dest/vmlinux"; \
	echo "mk/debug.mk: $$dest/vmlinux"

kernel-source: $(APT_STAMP)
	@set -euo pipefail; $(debug_release); \
	dest=$(KNOCKOUT_DEBUG_CACHE)/src/linux-source-$(DEBUG_SERIES); \
	if [ "$$(cat "$$dest/.release" 2>/dev/null)" = "$$release" ]; then exit 0; fi; \
	version=$$(dpkg-query -W -f='$${Version}' linux-image-$$release); \
	echo "mk/debug.mk: fetching linux-source-$(DEBUG_SERIES)=$$version (~140 MiB)"; \
	mkdir -p $(KNOCKOUT_DEBUG_CACHE)/src; \
	tmp=$$(mktemp -d "$(KNOCKOUT_DEBUG_CACHE)/src/fetch.XXXXXX"); \
	trap 'rm -rf "$$tmp"' EXIT; \
	( cd "$$tmp" && apt-get download -q "linux-source-$(DEBUG_SERIES)=$$version" ) || { \
		echo "mk/debug.mk: apt-get download linux-source-$(DEBUG_SERIES)=$$version failed;" \
			"run apt-get update, or upgrade the kernel (apt-get install linux-image-amd64)" >&2; \
		exit 1; }; \
	mkdir "$$tmp/tree"; \
	dpkg-deb --fsys-tarfile "$$tmp"/linux-source-$(DEBUG_SERIES)_*.deb \
		| tar -xO ./usr/src/linux-source-$(DEBUG_SERIES).tar.xz \
		| tar -xJ -C "$$tmp/tree" --strip-components=1 \
			$(addprefix linux-source-$(DEBUG_SERIES)/,$(DEBUG_SOURCE_DIRS)); \
	echo "$$release" > "$$tmp/tree/.release"; \
	rm -rf "$$dest"; \
	mv "$$tmp/tree" "$$dest"; \
	echo "mk/debug.mk: $$dest (for $$release)"
