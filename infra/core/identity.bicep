// The app's user-assigned identity: the one principal the function app uses for storage, Key Vault, Event Hubs,
// Application Insights and (when linked without a connection string) IoT hubs.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
