{{/* The operator's environment: one KEYPLANE_* variable per setting (keyplane/settings.py). */}}
{{- define "keyplane.env" -}}
{{- $c := .Values.config -}}
- name: POD_ID  # Kopf's identity in the peering object
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: KEYPLANE_NAMESPACES
  value: {{ join "," .Values.watchNamespaces | quote }}
- name: KEYPLANE_DEFAULT_BASE_URL
  value: {{ $c.defaultBaseURL | quote }}
- name: KEYPLANE_ROLES
  value: {{ join "," $c.roles | quote }}
- name: KEYPLANE_BUNDLE_SECRET_NAME
  value: {{ $c.bundleSecretName | quote }}
- name: KEYPLANE_ALLOW_PRIVATE_NETWORKS
  value: {{ ternary "true" "false" $c.allowPrivateNetworks | quote }}
- name: KEYPLANE_ALLOW_INSECURE_HTTP
  value: {{ ternary "true" "false" $c.allowInsecureHTTP | quote }}
- name: KEYPLANE_METADATA_MAX_BYTES
  value: {{ include "keyplane.number" $c.metadataMaxBytes | quote }}
- name: KEYPLANE_METADATA_TIMEOUT
  value: {{ include "keyplane.number" $c.metadataTimeout | quote }}
- name: KEYPLANE_METADATA_CONNECT_TIMEOUT
  value: {{ include "keyplane.number" $c.metadataConnectTimeout | quote }}
- name: KEYPLANE_CERTIFICATE_EXPIRY_WARNING
  value: {{ $c.certificateExpiryWarning | quote }}
- name: KEYPLANE_SP_CERTIFICATE_VALIDITY
  value: {{ $c.spCertificateValidity | quote }}
- name: KEYPLANE_SP_CERTIFICATE_RENEW_BEFORE
  value: {{ $c.spCertificateRenewBefore | quote }}
- name: KEYPLANE_DOMAIN_SCOPE
  value: {{ $c.domainScope | quote }}
- name: KEYPLANE_BUNDLE_DEBOUNCE
  value: {{ include "keyplane.number" $c.bundleDebounce | quote }}
- name: KEYPLANE_BUNDLE_MAX_DELAY
  value: {{ include "keyplane.number" $c.bundleMaxDelay | quote }}
- name: KEYPLANE_RESYNC_INTERVAL
  value: {{ include "keyplane.number" $c.resyncInterval | quote }}
- name: KEYPLANE_TIMER_INTERVAL
  value: {{ include "keyplane.number" $c.timerInterval | quote }}
- name: KEYPLANE_DNS_NAMESERVERS
  value: {{ join "," $c.dnsNameservers | quote }}
- name: KEYPLANE_METRICS_ENDPOINT
  value: {{ if .Values.metrics.enabled }}{{ printf "http://0.0.0.0:%d/metrics" (int .Values.metrics.port) | quote }}{{ else }}""{{ end }}
- name: KEYPLANE_LIVENESS_ENDPOINT
  value: {{ if .Values.livenessProbe.enabled }}{{ printf "http://0.0.0.0:%d/healthz" (int .Values.livenessProbe.port) | quote }}{{ else }}""{{ end }}
{{- if .Values.ha.enabled }}
- name: KEYPLANE_PEERING_NAME
  value: {{ .Values.ha.peeringName | quote }}
- name: KEYPLANE_PRIORITY  # distinct per replica: the StatefulSet ordinal
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
{{- else }}
- name: KEYPLANE_PEERING_NAME  # standalone: no peering
  value: ""
- name: KEYPLANE_PRIORITY
  value: "0"
{{- end }}
- name: PYTHONUNBUFFERED
  value: "1"
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod template shared by the Deployment and the HA StatefulSet. */}}
{{- define "keyplane.podTemplate" -}}
metadata:
  labels:
    {{- include "keyplane.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: operator
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "keyplane.serviceAccountName" . }}
  automountServiceAccountToken: true
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: operator
      image: {{ include "keyplane.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        {{- toYaml .Values.image.command | nindent 8 }}
      args:
        {{- toYaml .Values.image.args | nindent 8 }}
        {{- if .Values.verbose }}
        - --verbose
        {{- end }}
      env:
        {{- include "keyplane.env" . | nindent 8 }}
      {{- if or .Values.livenessProbe.enabled .Values.metrics.enabled }}
      ports:
        {{- if .Values.livenessProbe.enabled }}
        - name: health
          containerPort: {{ .Values.livenessProbe.port }}
          protocol: TCP
        {{- end }}
        {{- if .Values.metrics.enabled }}
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
        {{- end }}
      {{- end }}
      {{- if .Values.livenessProbe.enabled }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: health
        initialDelaySeconds: {{ .Values.livenessProbe.initialDelaySeconds }}
        periodSeconds: {{ .Values.livenessProbe.periodSeconds }}
        timeoutSeconds: {{ .Values.livenessProbe.timeoutSeconds }}
        failureThreshold: {{ .Values.livenessProbe.failureThreshold }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
