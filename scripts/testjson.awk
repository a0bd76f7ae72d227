# Reads `go test -json` events (one JSON object a line) and prints what a person
# wants to see: package results, build errors, and the full output of failing
# tests only (of every test with verbose=1). Writes counts to the file `summary`.
# Plain POSIX awk (mawk or gawk): relies on test2json's fixed field order, where
# "Output" is always the last field.

function field(line, key,    re, s) {
	re = "\"" key "\":\"[^\"]*\""
	if (!match(line, re)) return ""
	s = substr(line, RSTART + length(key) + 4, RLENGTH - length(key) - 5)
	return s
}

function output(line,    i, s) {
	i = index(line, "\"Output\":\"")
	if (i == 0) return ""
	s = substr(line, i + 10)
	sub(/"}[ \t\r]*$/, "", s)
	gsub(/\\\\/, "\001", s)
	gsub(/\\n/, "\n", s)
	gsub(/\\t/, "\t", s)
	gsub(/\\r/, "", s)
	gsub(/\\"/, "\"", s)
	gsub(/\\u003c/, "<", s)
	gsub(/\\u003e/, ">", s)
	gsub(/\\u0026/, "\\&", s)
	gsub(/\001/, "\\", s)
	return s
}

{
	line = $0
	if (substr(line, 1, 1) != "{") { print line; next }

	action = field(line, "Action")
	pkg = field(line, "Package")
	test = field(line, "Test")
	key = pkg " " test

	if (action == "build-output") { printf "%s", output(line); next }
	if (action == "output") {
		out = output(line)
		if (test == "") {
			if (out != "PASS\n" && out != "FAIL\n" && out !~ /^(=== |testing: warning: no tests)/) printf "%s", out
		} else if (verbose == 1) {
			printf "%s", out
		} else {
			buf[key] = buf[key] out
		}
		next
	}
	if (test == "") {
		if (action == "fail") failedpkgs[pkg] = 1
		next
	}
	if (action == "pass" || action == "fail" || action == "skip") {
		top = (index(test, "/") == 0)
		if (action == "pass") { pass++; if (top) tpass++ }
		if (action == "skip") { skip++; if (top) tskip++ }
		if (action == "fail") {
			fail++
			if (top) tfail++
			failed[++nfailed] = pkg "." test
			if (verbose != 1) printf "%s", buf[key]
		}
		delete buf[key]
	}
}

END {
	printf "tests: %d passed, %d failed, %d skipped (top-level: %d passed, %d failed, %d skipped; the rest are subtests)\n", \
		pass, fail, skip, tpass, tfail, tskip > summary
	n = 0
	for (p in failedpkgs) n++
	if (n > 0) {
		printf "packages failed: %d\n", n > summary
		for (p in failedpkgs) printf "  FAIL %s\n", p > summary
	}
	for (i = 1; i <= nfailed && i <= 50; i++) printf "  FAIL %s\n", failed[i] > summary
	if (nfailed > 50) printf "  ... and %d more\n", nfailed - 50 > summary
	close(summary)
}
