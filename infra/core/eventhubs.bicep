// Event Hubs namespace and the hub the service publishes provisioning events to. Local (SAS) auth is off: senders
// need Entra ID and Azure Event Hubs Data Sender.
param name string
param location string
param tags object
param eventHubName string
@allowed(['Basic', 'Standard'])
param sku string

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: { name: sku, tier: sku, capacity: 1 }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }

  resource hub 'eventhubs' = {
    name: eventHubName
    properties: {
      partitionCount: 2
      messageRetentionInDays: 1
    }
  }
}

output name string = namespace.name
output hostName string = '${namespace.name}.servicebus.windows.net'
