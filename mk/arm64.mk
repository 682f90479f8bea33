# The arm64 guest (issue 14): `knockout vm --arch arm64`, tests/vm/test_arm64_*.py.
#
#   make arm64-guest   qemu-system-aarch64 and debootstrap on the host; Debian's arm64
#                      packages known to apt (dpkg --add-architecture arm64); then
#                      /var/cache/knockout/arm64/root: Debian bookworm's arm64 userspace
#                      (python3, gcc, kmod, linux-perf, busybox-static), Debian's arm64
#                      kernel of the same ABI as the x86 guest's 6.1, knockout's
#                      dependencies as aarch64 wheels in /opt/knockout/venv, prepared by
#                      `python -m knockout.vm.guestroot build`: debootstrap's second stage
#                      runs chrooted on the host through qemu-user-static (binfmt_misc is
#                      mounted and Debian's qemu-aarch64 rule registered only for that
#                      step, then undone), or, where binfmt_misc cannot be used, inside an
#                      arm64 guest over the root shared read-write (slow: dpkg over 9p)
#
# Idempotent: the root's stamp (.knockout-root) records what went into it (kernel release
# and version, packages, wheel versions); an up-to-date root is kept (~1 s to check), any
# change rebuilds it. Downloads are cached in /var/cache/knockout/arm64/{debs,wheels}.
# The module this guest loads is cross-built against mk/kernels.mk's arm64 headers by the
# tests themselves (knockout.targets.kernel.build_module caches it by source hash).
# KNOCKOUT_ARM64_ROOT moves the root; KNOCKOUT_DEBIAN_MIRROR the mirror debootstrap uses.

ARM64_APT_PACKAGES := qemu-system-arm qemu-user-static debootstrap

.PHONY: arm64-guest
SETUP_TARGETS += arm64-guest

arm64-guest: $(PIP_STAMP) $(APT_STAMP)
	@set -euo pipefail; \
	missing=$$(for p in $(ARM64_APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then \
		echo "mk/arm64.mk: dpkg --add-architecture arm64"; \
		dpkg --add-architecture arm64; \
		apt-get update -qq; \
	fi; \
	if [ -n "$$missing" ]; then \
		echo "mk/arm64.mk: installing $$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing; }; \
	fi; \
	$(PY) -m knockout.vm.guestroot build
