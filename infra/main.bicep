// Open DPS on Azure: one resource group holding a Flex Consumption function app (the bundle), its storage (host,
// deployment package, the service's tables), Key Vault (the key-encryption key and the root policy key), Event Hubs,
// Log Analytics + Application Insights, and one user-assigned identity that reaches all of them with Entra ID only.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name and tag every resource.')
param environmentName string

@minLength(1)
@description('Azure region of every resource (must offer Flex Consumption).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object ID of the person or pipeline running azd: gets data-plane rights for the post-provision step.')
param principalId string = ''

@allowed(['User', 'ServicePrincipal'])
@description('Kind of principalId: User for `azd up` at a desk, ServicePrincipal in a pipeline.')
param principalType string = 'User'

@description('ID scope devices use; empty: derived from the subscription and environment (0ne + 8 hex digits).')
param idScope string = ''

@description('Extra host name (custom domain) devices and service SDKs may use besides the default one.')
param customDomain string = ''

@allowed([512, 2048, 4096])
@description('Flex Consumption instance memory size.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Upper bound of Flex Consumption scale-out (caps cost and the load on Table Storage).')
param maximumInstanceCount int = 100

@description('Key Vault purge protection. Leave on in production: the vault key unwraps every sealed device key.')
param enablePurgeProtection bool = true

@allowed(['Basic', 'Standard'])
@description('Event Hubs tier: Standard (~22 USD/month for 1 throughput unit) or Basic (about half; one consumer group).')
param eventHubsSku string = 'Standard'

@description('Table name prefix (tables <prefix>Devices, <prefix>Groups, <prefix>Config, <prefix>Outbox).')
param tablePrefix string = 'dps'

param resourceGroupName string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
// A DPS ID scope is `0ne` + 8 upper-case hex digits; guid() gives stable hex for this subscription + environment.
var derivedIdScope = '0ne${toUpper(take(replace(guid(subscription().id, environmentName, 'open-dps-id-scope'), '-', ''), 8))}'
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'
var serviceOwnerSecretName = 'dps-service-owner-key'
var eventHubName = 'dps-events'

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'core/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'core/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'core/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    tableNames: ['${tablePrefix}Devices', '${tablePrefix}Groups', '${tablePrefix}Config', '${tablePrefix}Outbox']
  }
}

module keyVault 'core/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    enablePurgeProtection: enablePurgeProtection
  }
}

module eventHubs 'core/eventhubs.bicep' = {
  name: 'eventhubs'
  scope: rg
  params: {
    name: '${abbrs.eventHubNamespaces}${resourceToken}'
    location: location
    tags: tags
    eventHubName: eventHubName
    sku: eventHubsSku
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    eventHubNamespaceName: eventHubs.outputs.name
    eventHubName: eventHubName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  dependsOn: [rbac]
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    keyVaultName: keyVault.outputs.name
    keyVaultUri: keyVault.outputs.uri
    keyEncryptionKeyName: keyVault.outputs.keyName
    serviceOwnerSecretName: serviceOwnerSecretName
    eventHubsNamespaceHost: eventHubs.outputs.hostName
    eventHubName: eventHubName
    idScope: !empty(idScope) ? idScope : derivedIdScope
    customDomain: customDomain
    tablePrefix: tablePrefix
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
}

// Read by azd (written to .azure/<env>/.env) and by infra/scripts/postprovision.*. No secrets here.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CLIENT_ID string = identity.outputs.clientId
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_URI string = 'https://${api.outputs.defaultHostName}'
output DPS_GLOBAL_ENDPOINT string = api.outputs.defaultHostName
output DPS_ID_SCOPE string = !empty(idScope) ? idScope : derivedIdScope
output DPS_SERVICE_HOSTNAMES string = api.outputs.serviceHostNames
output DPS_TABLES_ENDPOINT string = storage.outputs.tableEndpoint
output DPS_KEY_VAULT_NAME string = keyVault.outputs.name
output DPS_KEY_VAULT_URL string = keyVault.outputs.uri
output DPS_KEY_VAULT_KEY string = keyVault.outputs.keyName
output DPS_SERVICE_OWNER_SECRET_NAME string = serviceOwnerSecretName
output DPS_EVENT_HUBS_NAMESPACE string = eventHubs.outputs.hostName
output DPS_EVENT_HUB_NAME string = eventHubName
