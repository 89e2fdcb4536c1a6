#!/bin/sh
# Writes a C file embedding deploy/crds/*.yaml verbatim, so the validator in
# src/resource/schema.c reads the CRDs' own openAPIV3Schema: one schema, two
# enforcers. Usage: scripts/embed-crds.sh OUT.c
set -eu
out=$1
tmp=$out.tmp
{
	echo '/* Generated at build time by scripts/embed-crds.sh from deploy/crds: do not edit. */'
	echo '#include "resource/schema.h"'
	for plural in analyticsworkspaces analyticsworkspacebindings analyticsworkspacedatasources analyticsworkspacedatabindings; do
		echo "static const char crd_${plural}[] = {"
		od -An -v -tx1 "deploy/crds/${plural}.yaml" | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'
		echo '0x00 };'
	done
	echo 'const char *const schema_crd_yaml[RESOURCE_KIND_COUNT] = {'
	echo '	[RESOURCE_WORKSPACE] = crd_analyticsworkspaces,'
	echo '	[RESOURCE_WORKSPACE_BINDING] = crd_analyticsworkspacebindings,'
	echo '	[RESOURCE_DATASOURCE] = crd_analyticsworkspacedatasources,'
	echo '	[RESOURCE_DATABINDING] = crd_analyticsworkspacedatabindings,'
	echo '};'
} >"$tmp"
mv "$tmp" "$out"
