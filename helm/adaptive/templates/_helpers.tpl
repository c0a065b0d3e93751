{{/* Labels of everything the chart installs. */}}
{{- define "adaptive.labels" -}}
app.kubernetes.io/name: adaptive-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
What the operator does to pipelines and their children: read InferencePipelines, write their status and own
children through them (blockOwnerDeletion, which clusters enforcing owner-reference permissions allow only with
the finalizers' update); own Deployments, Services and the routers' ConfigMaps; read the model servers' pods to
say why a variant does not start; record Events.
*/}}
{{- define "adaptive.pipelineRules" -}}
- apiGroups: [adaptive.dev]
  resources: [inferencepipelines]
  verbs: [get, list, watch]
- apiGroups: [adaptive.dev]
  resources: [inferencepipelines/status]
  verbs: [get, patch, update]
- apiGroups: [adaptive.dev]
  resources: [inferencepipelines/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, create, patch, update, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}
