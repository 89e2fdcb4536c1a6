{{/*
Names. fullname is "<release>-airlock" unless the release name already contains
the chart name; truncated to 63 characters (the DNS label limit).
*/}}
{{- define "airlock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "airlock.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The operator's objects: "<fullname>-operator". */}}
{{- define "airlock.operatorName" -}}
{{- printf "%s-operator" (include "airlock.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "airlock.frontendName" -}}
{{- printf "%s-frontend" (include "airlock.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The uploaders' proxy Secret (uploader.proxySecret.name, else <fullname>-uploader-proxy). */ -}}
{{- define "airlock.uploaderProxySecret" -}}
{{- .Values.uploader.proxySecret.name | default (printf "%s-uploader-proxy" (include "airlock.fullname" .) | trunc 63 | trimSuffix "-") -}}
{{- end -}}

{{- define "airlock.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels; pass a dict {"ctx": $, "component": "operator"}. */}}
{{- define "airlock.labels" -}}
helm.sh/chart: {{ include "airlock.chart" .ctx }}
{{ include "airlock.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: airlock
{{- end -}}

{{- define "airlock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "airlock.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "airlock.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "airlock.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Images: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "airlock.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "airlock.runnerImage" -}}
{{- $repo := .Values.runner.native.repository | default .Values.image.repository -}}
{{- $tag := .Values.runner.native.tag | default .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "airlock.dltRunnerImage" -}}
{{- printf "%s:%s" .Values.runner.dlt.repository (.Values.runner.dlt.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "airlock.uploaderImage" -}}
{{- printf "%s:%s" .Values.uploader.repository (.Values.uploader.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "airlock.frontendImage" -}}
{{- $repo := .Values.frontend.image.repository | default .Values.image.repository -}}
{{- $tag := .Values.frontend.image.tag | default .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{/*
The namespace the operator watches for the airlock's custom resources:
watchNamespace, else namespace. With clusterWide and no watchNamespace: ""
(every namespace).
*/}}
{{- define "airlock.watchNamespace" -}}
{{- if .Values.watchNamespace -}}
{{- .Values.watchNamespace -}}
{{- else if .Values.clusterWide -}}
{{- "" -}}
{{- else -}}
{{- .Values.namespace -}}
{{- end -}}
{{- end -}}

{{/* True ("true") when the custom resources live in another namespace than the workloads. */}}
{{- define "airlock.separateWatchNamespace" -}}
{{- if and .Values.watchNamespace (ne .Values.watchNamespace .Values.namespace) -}}true{{- end -}}
{{- end -}}

{{/*
RBAC rules, shared by the namespaced Roles and the ClusterRole so the two
modes can never drift apart. Each rule says why the operator needs it.
*/}}

{{/* Rules on the airlock's own custom resources (the watched namespace). */}}
{{- define "airlock.rules.customResources" -}}
# The datasources are the operator's input: list+watch feed its work queue, get
# re-reads one before acting; update/patch add and remove its finalizer (so
# deleting a datasource first removes what it owns). No create or delete: people
# create and delete datasources, the operator never does.
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["analyticsworkspacedatasources"]
  verbs: ["get", "list", "watch", "update", "patch"]
# dataState, stage, conditions and observedGeneration are written through a
# merge patch on /status carrying the resourceVersion (a 409 requeues).
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["analyticsworkspacedatasources/status"]
  verbs: ["get", "update", "patch"]
# Children carry controller owner references with blockOwnerDeletion, which
# needs update on the owner's finalizers subresource (OwnerReferencesPermissionEnforcement).
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["analyticsworkspacedatasources/finalizers"]
  verbs: ["update"]
# The operator reconciles bindings: it creates the binding of an uploaded
# datasource to its workspace, keeps them in step and removes a datasource's
# bindings when the datasource is deleted.
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["analyticsworkspacedatabindings"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Workspaces and user bindings are read only: to check that a datasource's
# workspace exists and who belongs to it. The workspace-management system owns them.
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["analyticsworkspaces", "analyticsworkspacebindings"]
  verbs: ["get", "list", "watch"]
{{- end -}}

{{/* Kubernetes Events, wherever the object they describe lives. */}}
{{- define "airlock.rules.events" -}}
# A Kubernetes Event for every transition (core and events.k8s.io APIs; patch
# increments the count of a repeated event). Events are never read back.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Rules in the workload namespace, where the operator creates children. */}}
{{- define "airlock.rules.workloads" -}}
# Import: a claim the job writes into; Uploaded: a staging claim. Secrets: the
# source-credentials Secret is read (get) and each job gets its own Secret,
# deleted when the job ends. Services front the uploaders. list+watch keep
# the operator's cache of its children; update/patch repair drift; delete
# removes them when their datasource goes.
- apiGroups: [""]
  resources: ["persistentvolumeclaims", "secrets", "services"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Import jobs: created once per attempt (deterministic name), watched until
# they end, deleted with their datasource. Jobs are never updated: a retry is a new Job.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs/status"]
  verbs: ["get"]
# One uploader Deployment per Uploaded datasource, created scaled to 0;
# list+watch wake a datasource whose uploader runs; patch scales an idle one
# back to 0 (a merge patch with the resourceVersion it decided on, which the
# scale subresource cannot carry), so no rule on deployments/scale.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# The uploaders' Ingresses (class and host from the chart's values).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# A failed job's reason comes from its pod: the pod's termination message and
# the tail of its log. Read only.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# The audit log: one AirlockAuditRecord per audited event, hash-chained
# (docs/kube-store.md). create appends, get finds the head, list reads the log
# back for export and verification. No update, patch or delete: append-only by RBAC.
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["airlockauditrecords"]
  verbs: ["get", "list", "create"]
{{- end -}}

{{/* Leader election. */}}
{{- define "airlock.rules.leaderElection" -}}
# Leader election: the replicas read and renew one Lease, and only that one
# (resourceNames). Kubernetes RBAC cannot restrict `create` by name (the name
# is not part of a create request's URL), so creating the Lease the first
# time needs a separate rule on all leases of the namespace; the operator
# only ever creates the one named below.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ .Values.operator.leaderElection.leaseName | quote }}]
  verbs: ["get", "update"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
{{- end -}}

{{/*
The frontend's rules (templates/frontend.yaml), each for a call it makes.
No watch anywhere: the frontend reads on demand and reconciles nothing.
*/}}

{{/* On the custom resources, where they live (watchNamespace, else namespace). */}}
{{- define "airlock.rules.frontendCustomResources" -}}
# The API over the Kubernetes store: people list and read the datasources they
# may see, create them (POST /api/v1/datasources), and the requester or an admin
# changes labels (PUT) or deletes one. No patch: store_kube writes a spec with PUT.
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["analyticsworkspacedatasources"]
  verbs: ["get", "list", "create", "update", "delete"]
# The gates' decisions (approve, reject, "all files uploaded") are merge patches
# on /status; a datasource created with a status gets it by a PUT on /status.
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["analyticsworkspacedatasources/status"]
  verbs: ["update", "patch"]
# An uploaded datasource's binding to its workspace is created with it, and
# removed with it; admins manage bindings through /api/v1/databindings.
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["analyticsworkspacedatabindings"]
  verbs: ["get", "list", "create", "update", "delete"]
# Which workspaces exist and who belongs to them. Read only: the
# workspace-management system owns them (the API answers 403 to writes).
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["analyticsworkspaces", "analyticsworkspacebindings"]
  verbs: ["get", "list"]
{{- end -}}

{{/* In the workload namespace: the uploaders and the audit log. */}}
{{- define "airlock.rules.frontendWorkloads" -}}
# The uploaders (src/runtime/uploader_scale.h): get reads one (owner, replicas,
# readiness); patch is uploader_wake (replicas 1 + scaled-up-at) and
# uploader_activity_touch's last-activity, merge patches on the Deployment. No
# list, create, update, delete, and nothing on deployments/scale.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "patch"]
# The hash-chained audit log, shared with the operator: create appends, get
# finds the head, list reads it back (a datasource's history). Append-only.
- apiGroups: ["xlscsde.nhs.uk"]
  resources: ["airlockauditrecords"]
  verbs: ["get", "list", "create"]
{{- end -}}

{{/*
The frontend's external URL (web.externalUrl): frontend.externalUrl, else
from its Ingress (https when it has a TLS section), else "" (the Host header).
*/}}
{{- define "airlock.frontendExternalUrl" -}}
{{- if .Values.frontend.externalUrl -}}
{{- .Values.frontend.externalUrl | trimSuffix "/" -}}
{{- else if and .Values.frontend.ingress.enabled .Values.frontend.ingress.host -}}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.frontend.ingress.tls))) .Values.frontend.ingress.host -}}
{{- end -}}
{{- end -}}

{{/* The frontend's settings file (docs/configuration.md): web and oidc only. */}}
{{- define "airlock.frontendConfig" -}}
{{- $fe := .Values.frontend -}}
{{- $web := dict "sessionIdleSeconds" (int $fe.sessionIdleSeconds) -}}
{{- with (include "airlock.frontendExternalUrl" .) }}{{ $_ := set $web "externalUrl" . }}{{ end -}}
{{- $cfg := dict "web" $web -}}
{{- if $fe.oidc.issuer -}}
{{- $oidc := dict "issuer" $fe.oidc.issuer "clientId" $fe.oidc.clientId "groupsClaim" $fe.oidc.groupsClaim "workspaceGroupPrefix" $fe.oidc.workspaceGroupPrefix -}}
{{- if $fe.oidc.clientSecret.secretName -}}
{{- $_ := set $oidc "clientSecretFile" "/var/run/airlock/oidc/client-secret" -}}
{{- end -}}
{{- $cfg = set $cfg "oidc" (merge $oidc (deepCopy ($fe.oidc.extra | default dict))) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
