# Guest kernels beside Debian's 6.1, and the arm64 headers the module cross-builds against (issue 10).
#
#   make kernel-6.12     linux-image-6.12-amd64 + linux-headers-6.12-amd64 installed beside 6.1
#                        (Debian 12 carries 6.12 in bookworm-security); the vm tier runs the
#                        kernel-cut scenarios on both
#   make arm64-headers   Debian's arm64 headers for the 6.1 arm64 release of the same ABI as
#                        the newest installed /boot/vmlinuz-6.1.* (apt-get download, never
#                        installed), unpacked under $(ARM64_HEADERS)/root, with this host's
#                        linux-kbuild-6.1 linked in; tests/vm/test_kernel_build.py cross-builds
#                        knockout.ko against it
#
# Both are idempotent: kernel-6.12 asks dpkg and does nothing when both packages are installed;
# arm64-headers keeps a tree whose .release names the current release. The ABI number moves
# with security updates (6.1.0-57 today): it is found at run time, never written here.

# tests/vm/test_kernel_build.py looks here too ($KNOCKOUT_ARM64_HEADERS moves both)
KNOCKOUT_ARM64_HEADERS ?= /var/cache/knockout/arm64-headers
ARM64_HEADERS := $(KNOCKOUT_ARM64_HEADERS)
KERNEL_612_PACKAGES := linux-image-6.12-amd64 linux-headers-6.12-amd64

.PHONY: kernel-6.12 arm64-headers
SETUP_TARGETS += kernel-6.12 arm64-headers

kernel-6.12: $(APT_STAMP)
	@set -euo pipefail; \
	missing=$$(for p in $(KERNEL_612_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "mk/kernels.mk: installing $$missing (~110 MiB)"; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
	|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $$missing; }

# The release of the newest installed 6.1 amd64 image, as arm64 (6.1.0-57-amd64 -> 6.1.0-57-arm64).
define arm64_release
release=$$(ls /boot/vmlinuz-6.1.*-amd64 2>/dev/null | sed 's|^/boot/vmlinuz-||' \
	| sort -V | tail -n 1); \
if [ -z "$$release" ]; then \
	echo "mk/kernels.mk: no /boot/vmlinuz-6.1.*-amd64 installed; install linux-image-amd64" >&2; \
	exit 1; \
fi; \
release=$${release%-amd64}-arm64
endef

arm64-headers: $(APT_STAMP)
	@set -euo pipefail; $(arm64_release); \
	root=$(ARM64_HEADERS)/root; \
	if [ "$$(cat "$$root/.release" 2>/dev/null)" = "$$release" ] \
		&& [ -f "$$root/usr/src/linux-headers-$$release/Makefile" ]; then exit 0; fi; \
	common=$${release%-arm64}-common; \
	version=$$(dpkg-query -W -f='$${Version}' "linux-image-$${release%-arm64}-amd64"); \
	echo "mk/kernels.mk: fetching linux-headers-$$release:arm64=$$version (~10 MiB, unpacked, not installed)"; \
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then \
		dpkg --add-architecture arm64; apt-get update -qq; \
	fi; \
	mkdir -p $(ARM64_HEADERS); \
	tmp=$$(mktemp -d "$(ARM64_HEADERS)/fetch.XXXXXX"); \
	trap 'rm -rf "$$tmp"' EXIT; \
	fetch() { ( cd "$$tmp" && apt-get download -q "linux-headers-$$release:arm64=$$version" \
		"linux-headers-$$common=$$version" ); }; \
	fetch || { apt-get update -qq && fetch; } || { \
		echo "mk/kernels.mk: apt-get download linux-headers-$$release:arm64=$$version failed;" \
			"run apt-get update, or upgrade the kernel (apt-get install linux-image-amd64)" >&2; \
		exit 1; }; \
	mkdir "$$tmp/root"; \
	for deb in "$$tmp"/*.deb; do dpkg-deb -x "$$deb" "$$tmp/root"; done; \
	mkdir -p "$$tmp/root/usr/lib"; \
	ln -s /usr/lib/linux-kbuild-6.1 "$$tmp/root/usr/lib/linux-kbuild-6.1"; \
	echo "$$release" > "$$tmp/root/.release"; \
	rm -rf "$$root"; \
	mv "$$tmp/root" "$$root"; \
	echo "mk/kernels.mk: $$root/usr/src/linux-headers-$$release"
