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

{{/* Image reference of one track: <registry>/<repository>[:<tag>][@<digest>]; the track's
registry, else image.registry. */}}
{{- define "scoring-canary.image" -}}
{{- $image := index . 1 -}}
{{- with ($image.registry | default (index . 0).Values.image.registry) }}{{ . }}/{{ end -}}
{{- $image.repository }}{{ with $image.tag }}:{{ . }}{{ end }}{{ with $image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/* The ingress gateway pods' labels: gateway.selector, else the flavour's ingress. */}}
{{- define "scoring-canary.gatewaySelector" -}}
{{- if .Values.gateway.selector -}}
{{- toYaml .Values.gateway.selector -}}
{{- else if eq .Values.istio.flavour "addon" -}}
istio: aks-istio-ingressgateway-{{ .Values.istio.addonIngress }}
{{- else -}}
istio: ingressgateway
{{- end -}}
{{- end -}}

{{/* Gateway hosts as a JSON list: gateway.hosts, else "*" on the local gateway and the
Service's own name on a cluster. */}}
{{- define "scoring-canary.hosts" -}}
{{- if .Values.gateway.hosts -}}
{{- toJson .Values.gateway.hosts -}}
{{- else if eq .Values.istio.flavour "local" -}}
["*"]
{{- else -}}
{{- list (include "scoring-canary.host" .) | toJson -}}
{{- end -}}
{{- end -}}

{{/* Whether the VirtualService is bound to the mesh gateway: routing.mesh, and no "*" host
(istiod refuses "*" on the mesh gateway: pkg/config/validation, "wildcard host * is not allowed
for virtual services bound to the mesh gateway"). Renders "true" or "". */}}
{{- define "scoring-canary.meshBound" -}}
{{- if and .Values.routing.mesh (not (has "*" (include "scoring-canary.hosts" . | fromJsonArray))) -}}
true
{{- end -}}
{{- end -}}

{{/* Pod labels that ask the sidecar injector for a proxy: the revision label when a revision
is set (the add-on injects only by istio.io/rev), else sidecar.istio.io/inject. The injector's
object webhooks (rev.object. and object.sidecar-injector.istio.io in istio/istio
manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml) select pods only in
namespaces with neither istio-injection nor istio.io/rev, so a namespace's own choice, an explicit
istio-injection=disabled included, still wins. */}}
{{- define "scoring-canary.injectionLabels" -}}
{{- if .Values.istio.revision -}}
istio.io/rev: {{ .Values.istio.revision }}
{{- else -}}
sidecar.istio.io/inject: "true"
{{- end -}}
{{- end -}}

{{/* Labels of a Namespace this release creates: injection by revision, else istio-injection. */}}
{{- define "scoring-canary.namespaceLabels" -}}
{{- if .Values.istio.revision -}}
istio.io/rev: {{ .Values.istio.revision }}
{{- else -}}
istio-injection: enabled
{{- end -}}
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

{{/* Rules the schema cannot express. Subsets select by track, so stable and canary may run
the same version, as they do for a moment while a promotion rolls out. */}}
{{- define "scoring-canary.validate" -}}
{{- if and (eq .Values.istio.flavour "addon") (not .Values.istio.revision) -}}
{{- fail "istio.revision: the AKS Istio add-on injects sidecars only by revision; set it to the cluster's revision, e.g. asm-1-26 (az aks mesh get-revisions)" -}}
{{- end -}}
{{- $hosts := include "scoring-canary.hosts" . | fromJsonArray -}}
{{- if and (has "*" $hosts) (ne .Values.istio.flavour "local") (not .Values.gateway.exclusive) -}}
{{- fail (printf "gateway.hosts: \"*\" on the shared %s ingress would take every host name its other Gateways serve; name the hosts callers use (default: the Service's own name), or set gateway.exclusive=true if the selector picks an ingress only this release uses" .Values.istio.flavour) -}}
{{- end -}}
{{- end -}}

{{/* Pod securityContext of the chosen Pod Security Standards profile. */}}
{{- define "scoring-canary.podSecurityContext" -}}
securityContext:
  {{- if eq .Values.podSecurity.profile "restricted" }}
  runAsNonRoot: true
  runAsUser: {{ .Values.podSecurity.runAsUser }}
  runAsGroup: {{ .Values.podSecurity.runAsGroup }}
  fsGroup: {{ .Values.podSecurity.runAsGroup }}
  {{- end }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Container securityContext of the profile, with .Values.securityContext merged over it.
baseline keeps the default capabilities (the AML image's root nginx and runit switch users)
but NET_RAW; restricted drops them all (Pod Security Standards, "Restricted"). */}}
{{- define "scoring-canary.containerSecurityContext" -}}
{{- $profile := dict "allowPrivilegeEscalation" false "privileged" false -}}
{{- if eq .Values.podSecurity.profile "restricted" -}}
{{- $_ := set $profile "runAsNonRoot" true -}}
{{- $_ := set $profile "capabilities" (dict "drop" (list "ALL")) -}}
{{- else -}}
{{- $_ := set $profile "capabilities" (dict "drop" (list "NET_RAW")) -}}
{{- end -}}
{{- toYaml (mergeOverwrite $profile (deepCopy (.Values.securityContext | default dict))) -}}
{{- end -}}
