{{/* Chart name and version, as the helm.sh/chart label wants it. */}}
{{- define "scoring-canary.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "scoring-canary.labels" -}}
helm.sh/chart: {{ include "scoring-canary.chart" . }}
app.kubernetes.io/name: {{ .Values.app }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Service FQDN every route and subset points at. */}}
{{- define "scoring-canary.host" -}}
{{- printf "%s.%s.svc.cluster.local" .Values.app .Release.Namespace -}}
{{- end -}}

{{/* The Gateway the VirtualService binds to: gateway.name, else <app>-gateway. */}}
{{- define "scoring-canary.gatewayName" -}}
{{- .Values.gateway.name | default (printf "%s-gateway" .Values.app) -}}
{{- end -}}

{{/* Image reference of one track: <registry>/<repository>:<tag>. */}}
{{- define "scoring-canary.image" -}}
{{- $image := index . 1 -}}
{{- with (index . 0).Values.image.registry }}{{ . }}/{{ end -}}
{{- $image.repository }}:{{ $image.tag -}}
{{- end -}}

{{/* timeout and retries of one http route, from .Values.routing; left out when unset. */}}
{{- define "scoring-canary.routePolicy" -}}
{{- with .timeout }}
timeout: {{ . }}
{{- end }}
{{- with .retries }}
retries:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Rules the schema cannot express (none yet: subsets select by track, so stable and canary
may run the same version, as they do for a moment while a promotion rolls out). */}}
{{- define "scoring-canary.validate" -}}
{{- end -}}
