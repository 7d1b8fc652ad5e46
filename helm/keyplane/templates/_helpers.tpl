{{/* Chart name. */}}
{{- define "keyplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-keyplane unless the release name already contains it. */}}
{{- define "keyplane.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object. Objects the operator writes carry app.kubernetes.io/managed-by: keyplane;
     the chart's own objects carry managed-by: Helm. */}}
{{- define "keyplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "keyplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keyplane
{{- end }}

{{- define "keyplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "keyplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keyplane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "keyplane.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A number as an env value: whole numbers without exponent (1048576, not 1.048576e+06), others as is. */}}
{{- define "keyplane.number" -}}
{{- if eq (float64 (int64 .)) (float64 .) }}{{ int64 . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/*
The namespaced permissions of the operator: used in the ClusterRole (all namespaces) or in one Role per
watched namespace. Exactly what the operator does, nothing more (tests/integration/test_least_privilege.py
checks each verb is used; docs/install.md says which behaviour uses it):
- its three kinds: list/watch (Kopf), patch (finalizer, keyplane.dev/* annotations) and patch of status;
  never read one by one;
- ConfigMaps: get (metadata configMapRef), list/watch (Kopf watches them to re-read changed metadata),
  create/patch/delete of the <idp>-sp-metadata ConfigMaps it writes (the SP metadata for IdP admins);
- Secrets: get/create/patch/delete by name only (token, SP signing and bundle Secrets; never listed or watched);
- Events: create (Kopf's and the operator's own);
- Deployments labelled keyplane.dev/consume-identity=true: list (by that label) and patch (the pod template
  annotation).
*/}}
{{- define "keyplane.namespacedRules" -}}
- apiGroups: [keyplane.dev]
  resources: [identityproviders, ssodomains, scimconnections]
  verbs: [list, watch, patch]
- apiGroups: [keyplane.dev]
  resources: [identityproviders/status, ssodomains/status, scimconnections/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, patch]
{{- end }}

{{/* What Kopf needs cluster-wide in every mode: CRD discovery (it lists and watches CRDs to notice
     its resources appear or change). */}}
{{- define "keyplane.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{/* Only when watching listed namespaces: Kopf lists and watches Namespaces to start and stop its
     per-namespace watches as the listed namespaces come and go. Cluster-wide it never looks at them. */}}
{{- define "keyplane.namespaceRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/* HA mode: Kopf announces each replica in the peering object's status (patch) and learns of the
     others by watching it (list, watch). It never creates it (the chart does) nor reads it by name. */}}
{{- define "keyplane.peeringRules" -}}
- apiGroups: [kopf.dev]
  resources: [{{ .resource }}]
  verbs: [list, watch, patch]
{{- end }}
