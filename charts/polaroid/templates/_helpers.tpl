{{/* Names. */}}
{{- define "polaroid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "polaroid.fullname" -}}
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

{{/* Object names; the worker headless name is short enough for pod DNS labels. */}}
{{- define "polaroid.coordinator" -}}{{ include "polaroid.fullname" . | trunc 51 | trimSuffix "-" }}-coordinator{{- end -}}
{{- define "polaroid.coordinatorInternal" -}}{{ include "polaroid.fullname" . | trunc 42 | trimSuffix "-" }}-coordinator-internal{{- end -}}
{{- define "polaroid.worker" -}}{{ include "polaroid.fullname" . | trunc 44 | trimSuffix "-" }}-worker{{- end -}}
{{- define "polaroid.workerHeadless" -}}{{ include "polaroid.fullname" . | trunc 44 | trimSuffix "-" }}-worker-headless{{- end -}}
{{- define "polaroid.redis" -}}{{ include "polaroid.fullname" . | trunc 57 | trimSuffix "-" }}-redis{{- end -}}
{{- define "polaroid.authSecret" -}}{{ include "polaroid.fullname" . | trunc 58 | trimSuffix "-" }}-auth{{- end -}}
{{- define "polaroid.config" -}}{{ include "polaroid.fullname" . | trunc 56 | trimSuffix "-" }}-config{{- end -}}
{{- define "polaroid.store" -}}{{ include "polaroid.fullname" . | trunc 57 | trimSuffix "-" }}-store{{- end -}}

{{- define "polaroid.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "polaroid.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* A host name inside the cluster: <name>.<namespace>.svc.<clusterDomain>. */}}
{{- define "polaroid.svcHost" -}}
{{- printf "%s.%s.svc.%s" .name .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/* Labels. */}}
{{- define "polaroid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "polaroid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "polaroid.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "polaroid.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: polaroid
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An image reference from {registry, repository, tag, digest}; .default is the tag to use when empty. */}}
{{- define "polaroid.imageRef" -}}
{{- $image := .image -}}
{{- $repo := $image.repository -}}
{{- if $image.registry }}{{ $repo = printf "%s/%s" $image.registry $image.repository }}{{ end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repo $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString (default .default $image.tag)) -}}
{{- end -}}
{{- end -}}

{{- define "polaroid.image" -}}
{{- include "polaroid.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) -}}
{{- end -}}

{{/*
TOML from a map, as the binary reads it (crates/polaroid/src/settings.rs): scalars and
lists first, then one [table] per map, recursively ([quotas.tenants.analytics]). Whole
numbers are written as integers (the binary's integer settings refuse 2.0; its float
settings take 2). Strings are JSON-quoted, which TOML's basic strings read alike.
Call with (dict "map" $m "prefix" "").
*/}}
{{- define "polaroid.toml" -}}
{{- $prefix := .prefix -}}
{{- range $key, $value := .map }}
{{- if not (kindIs "map" $value) }}
{{ $key }} = {{ include "polaroid.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $key, $value := .map }}
{{- if kindIs "map" $value }}
{{- $name := ternary $key (printf "%s.%s" $prefix $key) (eq $prefix "") }}

[{{ $name }}]
{{- include "polaroid.toml" (dict "map" $value "prefix" $name) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "polaroid.tomlValue" -}}
{{- if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if kindIs "slice" . -}}
[{{ range $i, $item := . }}{{ if $i }}, {{ end }}{{ include "polaroid.tomlValue" $item }}{{ end }}]
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 .) (floor .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if kindIs "invalid" . -}}
{{ fail "a null setting cannot be written to TOML: remove the key instead" }}
{{- else -}}
{{ . }}
{{- end -}}
{{- end -}}

{{/* Ports and paths inside the pods. */}}
{{- define "polaroid.grpcPort" -}}50051{{- end -}}
{{- define "polaroid.httpPort" -}}9090{{- end -}}

{{- define "polaroid.coordinatorUrl" -}}
{{- $scheme := ternary "https" "http" .Values.tls.enabled -}}
{{- printf "%s://%s:%s" $scheme (include "polaroid.svcHost" (dict "name" (include "polaroid.coordinatorInternal" .) "root" .)) (include "polaroid.grpcPort" .) -}}
{{- end -}}

{{/* The Secret and key that hold the Redis URL. */}}
{{- define "polaroid.redisSecret" -}}
{{- if .Values.redis.external.existingSecret -}}{{ .Values.redis.external.existingSecret }}{{- else -}}{{ include "polaroid.redis" . }}{{- end -}}
{{- end -}}
{{- define "polaroid.redisSecretKey" -}}
{{- if .Values.redis.external.existingSecret -}}{{ .Values.redis.external.key }}{{- else -}}redis-url{{- end -}}
{{- end -}}

{{/* Checks every render runs: combinations the schema cannot express. */}}
{{- define "polaroid.validate" -}}
{{- if and .Values.redis.external.existingSecret .Values.redis.deploy.enabled -}}
{{- fail "redis: set either redis.external.existingSecret (a Redis of yours) or redis.deploy.enabled (an evaluation Redis), not both" -}}
{{- end -}}
{{- if not (or .Values.redis.external.existingSecret .Values.redis.deploy.enabled) -}}
{{- fail "redis: set redis.external.existingSecret to a Secret holding your Redis URL, or redis.deploy.enabled=true for an evaluation Redis" -}}
{{- end -}}
{{- if and (eq .Values.store.type "objectStore") (not .Values.store.objectStore.url) -}}
{{- fail "store.type=objectStore needs store.objectStore.url (s3://bucket/prefix, gs://…, az://…)" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) -}}
{{- fail "tls.enabled needs tls.existingSecret: a Secret with tls.crt, tls.key and ca.crt" -}}
{{- end -}}
{{- $reserved := dict
  "coordinator" (list "bind_address" "http_address" "redis_url" "redis_prefix" "auth" "tls" "quotas")
  "worker" (list "bind_address" "http_address" "coordinator_url" "advertise_address" "worker_id" "handle_store" "state_dir" "store_url" "data_roots" "redis_url" "redis_prefix" "auth" "tls" "quotas") -}}
{{- range $component, $keys := $reserved -}}
{{- $config := (index $.Values $component).config -}}
{{- range $key := $keys -}}
{{- if hasKey $config $key -}}
{{- fail (printf "%s.config.%s is set by the chart (see values.yaml: auth, tls, quotas, store, data, redis); remove it" $component $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Topology spread: the given constraints, or nodes and zones, ScheduleAnyway. */}}
{{- define "polaroid.topologySpread" -}}
{{- if .constraints -}}
{{ toYaml .constraints }}
{{- else -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "polaroid.selectorLabels" .root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "polaroid.selectorLabels" .root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
{{- end -}}
{{- end -}}

{{/* Probes on the admin port. */}}
{{- define "polaroid.probes" -}}
{{- $scheme := ternary "HTTPS" "HTTP" (and .root.Values.tls.enabled .root.Values.tls.adminTls) -}}
startupProbe:
  httpGet: {path: /healthz, port: http-admin, scheme: {{ $scheme }}}
  {{- toYaml .probes.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /healthz, port: http-admin, scheme: {{ $scheme }}}
  {{- toYaml .probes.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: http-admin, scheme: {{ $scheme }}}
  {{- toYaml .probes.readiness | nindent 2 }}
{{- end -}}

{{/* Volumes every Polaroid pod mounts: its config, auth files, TLS, /tmp. */}}
{{- define "polaroid.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "polaroid.config" . }}
- name: auth
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ default (include "polaroid.authSecret" .) .Values.auth.tokens.existingSecret }}
          items:
            - key: {{ ternary .Values.auth.tokens.key "tokens" (ne .Values.auth.tokens.existingSecret "") }}
              path: tokens
      - secret:
          name: {{ default (include "polaroid.authSecret" .) .Values.auth.clusterSecret.existingSecret }}
          items:
            - key: {{ ternary .Values.auth.clusterSecret.key "cluster-secret" (ne .Values.auth.clusterSecret.existingSecret "") }}
              path: cluster-secret
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .Values.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end -}}

{{- define "polaroid.commonMounts" -}}
- name: config
  mountPath: /etc/polaroid/config
  readOnly: true
- name: auth
  mountPath: /etc/polaroid/auth
  readOnly: true
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/polaroid/tls
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Environment every Polaroid container gets. */}}
{{- define "polaroid.commonEnv" -}}
- name: POLAROID_LOG
  value: {{ .Values.logLevel | quote }}
- name: POLAROID_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "polaroid.redisSecret" . }}
      key: {{ include "polaroid.redisSecretKey" . }}
{{- end -}}

{{/* The [auth] and [tls] tables and redis_prefix, the same for both components. */}}
{{- define "polaroid.sharedSettings" -}}
{{- $auth := dict "tokens_file" "/etc/polaroid/auth/tokens" "cluster_secret_file" "/etc/polaroid/auth/cluster-secret" -}}
{{- if .Values.auth.anonymousTenant }}{{ $_ := set $auth "anonymous_tenant" .Values.auth.anonymousTenant }}{{ end -}}
{{- $settings := dict "bind_address" (printf "0.0.0.0:%s" (include "polaroid.grpcPort" .)) "http_address" (printf "0.0.0.0:%s" (include "polaroid.httpPort" .)) "redis_prefix" .Values.redis.prefix "auth" $auth -}}
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert_file" "/etc/polaroid/tls/tls.crt" "key_file" "/etc/polaroid/tls/tls.key" "ca_file" "/etc/polaroid/tls/ca.crt" "admin_tls" .Values.tls.adminTls -}}
{{- if .Values.tls.clientCertificates }}{{ $_ := set $tls "client_ca_file" "/etc/polaroid/tls/ca.crt" }}{{ end -}}
{{- if .Values.tls.serverName }}{{ $_ := set $tls "server_name" .Values.tls.serverName }}{{ end -}}
{{- $_ := set $settings "tls" $tls -}}
{{- end -}}
{{- if .Values.quotas }}{{ $_ := set $settings "quotas" .Values.quotas }}{{ end -}}
{{- toJson $settings -}}
{{- end -}}

{{- /* The admin port: this release's pods (helm test) and the monitoring namespace. */ -}}
{{- define "polaroid.adminPeers" -}}
- podSelector:
    matchLabels:
      {{- include "polaroid.selectorLabels" . | nindent 6 }}
- namespaceSelector:
    {{- toYaml .Values.networkPolicy.monitoringNamespaceSelector | nindent 4 }}
{{- end -}}

{{- /* A counter grew within a window, counting one that first appeared in it (a labelled
counter starts at its first increment, which increase() alone does not see). */ -}}
{{- define "polaroid.grew" -}}
(sum(increase({{ .series }}[{{ .window }}])) > 0 or (sum({{ .series }}) > 0 unless sum({{ .series }} offset {{ .window }})))
{{- end -}}
