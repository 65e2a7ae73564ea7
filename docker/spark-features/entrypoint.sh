#!/bin/bash
# Start-up of the spark-features image under Spark on Kubernetes. Spark's Kubernetes backend starts the
# driver container with the arguments `driver <spark-submit arguments>` and each executor container with
# `executor`, passing the executor's settings in SPARK_EXECUTOR_* / SPARK_DRIVER_URL / SPARK_APPLICATION_ID
# environment variables; anything else runs as given.
set -euo pipefail

classpath="${SPARK_HOME}/jars/*"
case "${1:-}" in
  driver)
    shift
    # Client mode inside the driver pod: the pod itself is the driver; executors call back to its address.
    exec "${SPARK_HOME}/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    java_opts=()
    for name in "${!SPARK_JAVA_OPT_@}"; do java_opts+=("${!name}"); done
    exec "${JAVA_HOME}/bin/java" "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" -cp "${classpath}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" --executor-id "${SPARK_EXECUTOR_ID}" --cores "${SPARK_EXECUTOR_CORES}" \
      --app-id "${SPARK_APPLICATION_ID}" --hostname "${SPARK_EXECUTOR_POD_IP}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    exec "$@"
    ;;
esac
