# The report's headless-browser check (issue 12).
#
#   make report-browser   Debian's chromium, for tests/unit/test_report_html.py's screenshot of
#                         report.html (installed only when missing; idempotent)

REPORT_APT_PACKAGES := chromium fonts-dejavu-core
REPORT_STAMP := $(VENV)/.report-browser-stamp

.PHONY: report-browser
SETUP_TARGETS += report-browser

report-browser: $(REPORT_STAMP)

$(REPORT_STAMP): mk/report.mk | $(VENV)/bin/python
	@missing=$$(for p in $(REPORT_APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "mk/report.mk: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	touch $@
