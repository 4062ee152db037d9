{{- define "wfclock.name" -}}wfclock{{- end -}}

{{- define "wfclock.fullname" -}}
{{- if contains "wfclock" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-wfclock" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wfclock.labels" -}}
app.kubernetes.io/name: wfclock
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "wfclock.selectorLabels" -}}
app.kubernetes.io/name: wfclock
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "wfclock.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wfclock.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wfclock.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "wfclock.namespacedRules" -}}
# The schedules it reconciles.
- apiGroups: [wfclock.dev]
  resources: [workflowschedules]
  verbs: [get, list, watch, patch, update]
- apiGroups: [wfclock.dev]
  resources: [workflowschedules/status]
  verbs: [get, patch, update]
# What it registers for them.
- apiGroups: [batch]
  resources: [cronjobs, jobs]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if or .Values.database.tenantLogins .Values.database.copyToScheduleNamespaces }}
# The launcher pods' database Secret (create cannot be limited by name).
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ .Values.database.existingSecret | quote }}]
  verbs: [get, patch]
{{- end }}
{{- if .Values.standby.enabled }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings, clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}

{{- define "wfclock.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}
