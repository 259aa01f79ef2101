#!/bin/sh
# Run every unit test binary and the end-to-end suite against BUILD (default
# build/), then print one summary line "N passed, N failed[, N skipped]".
# Exit status is non-zero when anything failed.
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$(pwd)/$BUILD" ;; esac
passed=0
failed=0
skipped=0

for t in $(find "$BUILD/tests/unit" -type f -perm -u+x 2>/dev/null | sort); do
	out=$("$t" 2>&1)
	line=$(printf '%s\n' "$out" | grep '^UNIT ' | tail -n 1)
	if [ -z "$line" ]; then
		printf '%s\n' "$out"
		echo "FAIL $t: crashed or printed no summary"
		failed=$((failed + 1))
		continue
	fi
	printf '%s\n' "$out" | grep -v '^ok ' | grep -v '^UNIT '
	p=$(echo "$line" | sed -n 's/^UNIT \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
	f=$(echo "$line" | sed -n 's/^UNIT \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
	echo "unit ${t#$BUILD/tests/unit/}: $p passed, $f failed"
	passed=$((passed + p))
	failed=$((failed + f))
done

xml="$BUILD/e2e-junit.xml"
rm -f "$xml"
RELAIS_BUILD="$BUILD" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
	--junitxml="$xml" ${PYTEST_ARGS:-} tests/e2e
if [ -f "$xml" ]; then
	set -- $(/usr/bin/python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
suites = [r] if r.tag == "testsuite" else list(r)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
s = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - s, f, s)
PY
)
	passed=$((passed + $1))
	failed=$((failed + $2))
	skipped=$((skipped + $3))
else
	echo "FAIL e2e: pytest produced no report"
	failed=$((failed + 1))
fi

if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
